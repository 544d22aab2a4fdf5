// A small Node-API addon: an NFLOG netlink socket (nfnetlink_log) bound to one group, read on a
// thread of its own, its datagrams handed to JavaScript in batches.
//
// Why: Node has no netlink sockets, and the kernel's drops of governed traffic arrive through
// nft `log group N` rules as NFLOG messages. Only the socket lives here; the messages are parsed
// in TypeScript (src/datapath/nflog-wire.ts), where they are bounded and tested.
//
// JS API (see src/datapath/nflog-reader.ts):
//   open(options: { group: number, copyRange: number, netns?: string, rcvbuf?: number,
//                   flushMs?: number, qthresh?: number },
//        onBatch: (datagrams: Buffer[], lost: number) => void): handle
//     The socket is made in the network namespace `netns` (a path such as /run/netns/x) when
//     given, by switching this thread there for the socket() call only. Throws with the errno
//     of a failed step (EPERM: another socket has bound the group, or not root).
//   close(handle): stops the reader thread and closes the socket; onBatch is not called after.
//   `lost` counts receive-buffer overruns (ENOBUFS): the kernel dropped messages for us.
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <linux/netlink.h>
#include <node_api.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr size_t kRecvBytes = 256 * 1024;
constexpr size_t kMaxBatch = 256;

struct Batch {
  std::vector<std::vector<uint8_t>> datagrams;
  uint64_t lost = 0;
};

struct Reader {
  int fd = -1;
  int wake[2] = {-1, -1};
  std::thread thread;
  napi_threadsafe_function tsfn = nullptr;
  std::atomic<bool> closing{false};
  bool closed = false;
};

void ThrowErrno(napi_env env, const char* what, int err) {
  std::string msg = std::string(what) + ": " + std::strerror(err);
  napi_value code, message, error, errnoValue;
  napi_create_string_utf8(env, "NG_NFLOG_ADDON", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg.c_str(), NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_create_int32(env, err, &errnoValue);
  napi_set_named_property(env, error, "errno", errnoValue);
  napi_throw(env, error);
}

// One config message (NFULNL_MSG_CONFIG) with one attribute, acked; returns 0 or an errno.
int Configure(int fd, uint16_t group, uint16_t attrType, const void* value, uint16_t valueLen, uint32_t seq) {
  uint8_t buf[128];
  std::memset(buf, 0, sizeof(buf));
  auto* nlh = reinterpret_cast<nlmsghdr*>(buf);
  nlh->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  nlh->nlmsg_seq = seq;
  auto* nfg = reinterpret_cast<nfgenmsg*>(buf + NLMSG_HDRLEN);
  nfg->nfgen_family = AF_UNSPEC;
  nfg->version = NFNETLINK_V0;
  nfg->res_id = htons(group);
  size_t at = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg));
  auto* attr = reinterpret_cast<nlattr*>(buf + at);
  attr->nla_len = NLA_HDRLEN + valueLen;
  attr->nla_type = attrType;
  std::memcpy(buf + at + NLA_HDRLEN, value, valueLen);
  nlh->nlmsg_len = at + NLA_ALIGN(attr->nla_len);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, buf, nlh->nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) return errno;
  // The ack: an NLMSG_ERROR with error 0, or the errno of the failure. Bounded wait.
  for (int tries = 0; tries < 8; tries++) {
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, 1000);
    if (r <= 0) return r == 0 ? ETIMEDOUT : errno;
    uint8_t reply[4096];
    ssize_t n = recv(fd, reply, sizeof(reply), 0);
    if (n < 0) return errno;
    for (auto* h = reinterpret_cast<nlmsghdr*>(reply); NLMSG_OK(h, static_cast<size_t>(n)); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_ERROR && h->nlmsg_seq == seq) {
        auto* e = reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h));
        return -e->error;
      }
    }
  }
  return EPROTO;
}

// Switch this thread to the namespace at `path` for one socket() call; returns the fd or -errno.
int SocketIn(const std::string& path) {
  int saved = -1;
  int target = -1;
  if (!path.empty()) {
    saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (saved < 0) return -errno;
    target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (target < 0 || setns(target, CLONE_NEWNET) != 0) {
      int err = errno;
      if (target >= 0) close(target);
      close(saved);
      return -err;
    }
    close(target);
  }
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  int err = errno;
  if (saved >= 0) {
    // Back to where the JavaScript thread was; failing that, this thread is in the wrong
    // namespace for every socket it makes later, so stop the process rather than go on.
    if (setns(saved, CLONE_NEWNET) != 0) std::abort();
    close(saved);
  }
  return fd < 0 ? -err : fd;
}

void CallJs(napi_env env, napi_value callback, void*, void* data) {
  auto* batch = static_cast<Batch*>(data);
  if (env != nullptr && callback != nullptr) {
    napi_value list, lost, undefined;
    napi_create_array_with_length(env, batch->datagrams.size(), &list);
    for (size_t i = 0; i < batch->datagrams.size(); i++) {
      napi_value b;
      void* copy;
      const auto& d = batch->datagrams[i];
      napi_create_buffer_copy(env, d.size(), d.data(), &copy, &b);
      napi_set_element(env, list, i, b);
    }
    napi_create_double(env, static_cast<double>(batch->lost), &lost);
    napi_get_undefined(env, &undefined);
    napi_value argv[2] = {list, lost};
    napi_call_function(env, undefined, callback, 2, argv, nullptr);
  }
  delete batch;
}

void ReadLoop(Reader* r) {
  std::vector<uint8_t> buf(kRecvBytes);
  while (!r->closing.load()) {
    pollfd fds[2] = {{r->fd, POLLIN, 0}, {r->wake[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents != 0) break;
    auto* batch = new Batch();
    while (batch->datagrams.size() < kMaxBatch) {
      ssize_t n = recv(r->fd, buf.data(), buf.size(), MSG_DONTWAIT);
      if (n < 0) {
        if (errno == ENOBUFS) {
          batch->lost++;
          continue;
        }
        break;  // EAGAIN: drained
      }
      batch->datagrams.emplace_back(buf.begin(), buf.begin() + n);
    }
    if (batch->datagrams.empty() && batch->lost == 0) {
      delete batch;
      continue;
    }
    if (napi_call_threadsafe_function(r->tsfn, batch, napi_tsfn_blocking) != napi_ok) {
      delete batch;
      break;
    }
  }
}

void Stop(Reader* r) {
  if (r->closed) return;
  r->closed = true;
  r->closing.store(true);
  if (r->wake[1] >= 0) {
    char c = 1;
    (void)!write(r->wake[1], &c, 1);
  }
  // Abort first: a reader blocked on a full queue (this thread is not draining it now) then
  // returns napi_closing and ends, so the join below cannot wait forever.
  if (r->tsfn != nullptr) napi_release_threadsafe_function(r->tsfn, napi_tsfn_abort);
  if (r->thread.joinable()) r->thread.join();
  r->tsfn = nullptr;
  if (r->fd >= 0) close(r->fd);
  if (r->wake[0] >= 0) close(r->wake[0]);
  if (r->wake[1] >= 0) close(r->wake[1]);
  r->fd = r->wake[0] = r->wake[1] = -1;
}

void Finalize(napi_env, void* data, void*) {
  auto* r = static_cast<Reader*>(data);
  Stop(r);
  delete r;
}

bool GetUint(napi_env env, napi_value obj, const char* key, uint32_t* out, bool required) {
  bool has = false;
  napi_has_named_property(env, obj, key, &has);
  if (!has) return !required;
  napi_value v;
  napi_get_named_property(env, obj, key, &v);
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_undefined) return !required;
  return napi_get_value_uint32(env, v, out) == napi_ok;
}

napi_value Open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  napi_valuetype t0 = napi_undefined, t1 = napi_undefined;
  if (argc >= 2) {
    napi_typeof(env, argv[0], &t0);
    napi_typeof(env, argv[1], &t1);
  }
  if (t0 != napi_object || t1 != napi_function) {
    napi_throw_type_error(env, "NG_NFLOG_ADDON", "open(options, onBatch)");
    return nullptr;
  }
  uint32_t group = 0, copyRange = 128, rcvbuf = 4 * 1024 * 1024, flushMs = 100, qthresh = 64;
  if (!GetUint(env, argv[0], "group", &group, true) || group > 65535 ||
      !GetUint(env, argv[0], "copyRange", &copyRange, false) || !GetUint(env, argv[0], "rcvbuf", &rcvbuf, false) ||
      !GetUint(env, argv[0], "flushMs", &flushMs, false) || !GetUint(env, argv[0], "qthresh", &qthresh, false)) {
    napi_throw_type_error(env, "NG_NFLOG_ADDON", "group (0..65535), copyRange, rcvbuf, flushMs, qthresh: integers");
    return nullptr;
  }
  std::string netns;
  bool hasNetns = false;
  napi_has_named_property(env, argv[0], "netns", &hasNetns);
  if (hasNetns) {
    napi_value v;
    napi_get_named_property(env, argv[0], "netns", &v);
    napi_valuetype t;
    napi_typeof(env, v, &t);
    if (t == napi_string) {
      char path[512];
      size_t len = 0;
      napi_get_value_string_utf8(env, v, path, sizeof(path), &len);
      netns.assign(path, len);
    }
  }

  int fd = SocketIn(netns);
  if (fd < 0) {
    ThrowErrno(env, "socket(NETLINK_NETFILTER)", -fd);
    return nullptr;
  }
  // A large receive buffer absorbs bursts (FORCE needs CAP_NET_ADMIN; fall back to the capped one).
  int size = static_cast<int>(rcvbuf);
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) != 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "bind", err);
    return nullptr;
  }
  uint8_t bindCmd = NFULNL_CFG_CMD_BIND;
  nfulnl_msg_config_mode mode{};
  mode.copy_range = htonl(copyRange);
  mode.copy_mode = NFULNL_COPY_PACKET;
  uint32_t timeout = htonl(flushMs / 10 == 0 ? 1 : flushMs / 10);  // in 1/100 s
  uint32_t threshold = htonl(qthresh);
  int err = Configure(fd, group, NFULA_CFG_CMD, &bindCmd, sizeof(bindCmd), 1);
  const char* step = "bind group";
  if (err == 0) {
    step = "copy mode";
    err = Configure(fd, group, NFULA_CFG_MODE, &mode, sizeof(mode), 2);
  }
  if (err == 0) {
    step = "flush timeout";
    err = Configure(fd, group, NFULA_CFG_TIMEOUT, &timeout, sizeof(timeout), 3);
  }
  if (err == 0) {
    step = "queue threshold";
    err = Configure(fd, group, NFULA_CFG_QTHRESH, &threshold, sizeof(threshold), 4);
  }
  if (err != 0) {
    close(fd);
    ThrowErrno(env, step, err);
    return nullptr;
  }

  auto* r = new Reader();
  r->fd = fd;
  if (pipe2(r->wake, O_CLOEXEC) != 0) {
    int e = errno;
    close(fd);
    delete r;
    ThrowErrno(env, "pipe", e);
    return nullptr;
  }
  napi_value name;
  napi_create_string_utf8(env, "nflog", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[1], nullptr, name, 64, 1, nullptr, nullptr, nullptr, CallJs,
                                      &r->tsfn) != napi_ok) {
    close(fd);
    close(r->wake[0]);
    close(r->wake[1]);
    delete r;
    napi_throw_error(env, "NG_NFLOG_ADDON", "napi_create_threadsafe_function failed");
    return nullptr;
  }
  r->thread = std::thread(ReadLoop, r);
  napi_value handle;
  napi_create_object(env, &handle);
  napi_wrap(env, handle, r, Finalize, nullptr, nullptr);
  return handle;
}

napi_value Close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  void* data = nullptr;
  if (argc < 1 || napi_unwrap(env, argv[0], &data) != napi_ok || data == nullptr) {
    napi_throw_type_error(env, "NG_NFLOG_ADDON", "close(handle)");
    return nullptr;
  }
  Stop(static_cast<Reader*>(data));
  return nullptr;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", nullptr, Open, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"close", nullptr, Close, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, 2, props);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
