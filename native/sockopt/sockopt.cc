// A tiny Node-API addon: the original destination of a connection that nftables REDIRECTed to
// us, read with getsockopt(SO_ORIGINAL_DST) (IPv4) or getsockopt(IP6T_SO_ORIGINAL_DST) (IPv6).
//
// Why: Node has no API for it, and the transparent SNI proxy must dial the address the client
// chose (never one it resolves itself). The kernel answers from the connection's conntrack entry.
//
// JS API (see src/proxy/original-dst.ts):
//   getOriginalDst(fd: number, family: 4 | 6): { address: string, port: number } | null
//     null when the kernel has no original destination (no conntrack entry: ENOENT, or a bad fd);
//   lastErrno(): number   the errno of the last failed getOriginalDst (for logs)
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <node_api.h>
#include <sys/socket.h>

#include <cstring>

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

namespace {

int last_errno = 0;

napi_value Null(napi_env env) {
  napi_value v;
  napi_get_null(env, &v);
  return v;
}

napi_value GetOriginalDst(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < 2) {
    napi_throw_type_error(env, "NG_SOCKOPT_ADDON", "getOriginalDst(fd, family)");
    return nullptr;
  }
  int32_t fd = -1;
  int32_t family = 0;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int32(env, argv[1], &family) != napi_ok ||
      fd < 0 || (family != 4 && family != 6)) {
    napi_throw_type_error(env, "NG_SOCKOPT_ADDON", "fd must be a non-negative integer and family 4 or 6");
    return nullptr;
  }
  char text[INET6_ADDRSTRLEN] = {0};
  int port = 0;
  if (family == 4) {
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    std::memset(&sa, 0, sizeof(sa));
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &sa, &len) != 0) {
      last_errno = errno;
      return Null(env);
    }
    if (sa.sin_family != AF_INET || inet_ntop(AF_INET, &sa.sin_addr, text, sizeof(text)) == nullptr) {
      last_errno = EAFNOSUPPORT;
      return Null(env);
    }
    port = ntohs(sa.sin_port);
  } else {
    struct sockaddr_in6 sa;
    socklen_t len = sizeof(sa);
    std::memset(&sa, 0, sizeof(sa));
    if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &sa, &len) != 0) {
      last_errno = errno;
      return Null(env);
    }
    if (sa.sin6_family != AF_INET6 || inet_ntop(AF_INET6, &sa.sin6_addr, text, sizeof(text)) == nullptr) {
      last_errno = EAFNOSUPPORT;
      return Null(env);
    }
    port = ntohs(sa.sin6_port);
  }
  last_errno = 0;
  napi_value result;
  napi_value address;
  napi_value port_value;
  if (napi_create_object(env, &result) != napi_ok ||
      napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &address) != napi_ok ||
      napi_create_int32(env, port, &port_value) != napi_ok ||
      napi_set_named_property(env, result, "address", address) != napi_ok ||
      napi_set_named_property(env, result, "port", port_value) != napi_ok) {
    napi_throw_error(env, "NG_SOCKOPT_ADDON", "could not build the result");
    return nullptr;
  }
  return result;
}

napi_value LastErrno(napi_env env, napi_callback_info) {
  napi_value v;
  napi_create_int32(env, last_errno, &v);
  return v;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"getOriginalDst", nullptr, GetOriginalDst, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"lastErrno", nullptr, LastErrno, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  if (napi_define_properties(env, exports, 2, props) != napi_ok) return nullptr;
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
