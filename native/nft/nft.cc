// A small Node-API addon that hands an nftables command buffer to libnftables.
//
// Why: Node has no netlink API, and spawning `nft` per DNS answer costs milliseconds. Here one
// libnftables context lives for the life of the driver; each run executes as napi async work on
// the libuv pool (off the event loop) and returns nft's exit code, its output and its error text.
// A buffer of several commands is one kernel transaction, as with `nft -f`.
//
// JS API (see src/datapath/nft-executor-addon.ts):
//   open(): handle
//   run(handle, commands: string, flags: number): Promise<{ rc: number, out: string, err: string }>
//     flags: 1 = JSON output, 2 = terse (omit set elements)
//   runSync(handle, commands: string, flags: number): { rc, out, err }
//     the same on the calling thread: for small write transactions, where the hand-off to a pool
//     thread and back costs more than the transaction (bench/datapath)
//   close(handle): void
#include <nftables/libnftables.h>
#include <node_api.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

namespace {

struct Handle {
  struct nft_ctx *ctx = nullptr;
  // One context must not run two commands at once; the JS writer already serializes, this
  // guards against a misuse turning into memory corruption.
  std::mutex lock;
};

struct Work {
  Handle *handle = nullptr;
  napi_ref handle_ref = nullptr;
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;
  std::string commands;
  uint32_t flags = 0;
  int rc = -1;
  std::string out;
  std::string err;
};

#define CHECK(env, call)                                      \
  do {                                                        \
    if ((call) != napi_ok) {                                  \
      napi_throw_error((env), "NG_NFT_ADDON", #call " failed"); \
      return nullptr;                                         \
    }                                                         \
  } while (0)

void FinalizeHandle(napi_env, void *data, void *) {
  auto *h = static_cast<Handle *>(data);
  std::lock_guard<std::mutex> guard(h->lock);
  if (h->ctx != nullptr) nft_ctx_free(h->ctx);
  h->ctx = nullptr;
  delete h;
}

Handle *GetHandle(napi_env env, napi_value value) {
  void *data = nullptr;
  if (napi_get_value_external(env, value, &data) != napi_ok || data == nullptr) {
    napi_throw_type_error(env, "NG_NFT_ADDON", "expected an nft handle");
    return nullptr;
  }
  return static_cast<Handle *>(data);
}

napi_value Open(napi_env env, napi_callback_info) {
  auto *h = new Handle();
  h->ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (h->ctx == nullptr) {
    delete h;
    napi_throw_error(env, "NG_NFT_ADDON", "nft_ctx_new failed");
    return nullptr;
  }
  if (nft_ctx_buffer_output(h->ctx) != 0 || nft_ctx_buffer_error(h->ctx) != 0) {
    nft_ctx_free(h->ctx);
    delete h;
    napi_throw_error(env, "NG_NFT_ADDON", "nft_ctx_buffer_output/error failed");
    return nullptr;
  }
  napi_value external;
  CHECK(env, napi_create_external(env, h, FinalizeHandle, nullptr, &external));
  return external;
}

void Execute(napi_env, void *data) {
  auto *w = static_cast<Work *>(data);
  std::lock_guard<std::mutex> guard(w->handle->lock);
  struct nft_ctx *ctx = w->handle->ctx;
  if (ctx == nullptr) {
    w->rc = -1;
    w->err = "nft handle is closed";
    return;
  }
  unsigned int out_flags = 0;
  if (w->flags & 1u) out_flags |= NFT_CTX_OUTPUT_JSON;
  if (w->flags & 2u) out_flags |= NFT_CTX_OUTPUT_TERSE;
  nft_ctx_output_set_flags(ctx, out_flags);
  w->rc = nft_run_cmd_from_buffer(ctx, w->commands.c_str());
  // The getters return what was written since the last call and rewind the buffers.
  const char *out = nft_ctx_get_output_buffer(ctx);
  const char *err = nft_ctx_get_error_buffer(ctx);
  w->out = out != nullptr ? out : "";
  w->err = err != nullptr ? err : "";
}

void Complete(napi_env env, napi_status status, void *data) {
  auto *w = static_cast<Work *>(data);
  napi_value result = nullptr;
  napi_value value = nullptr;
  if (status == napi_ok && napi_create_object(env, &result) == napi_ok) {
    napi_create_int32(env, w->rc, &value);
    napi_set_named_property(env, result, "rc", value);
    napi_create_string_utf8(env, w->out.data(), w->out.size(), &value);
    napi_set_named_property(env, result, "out", value);
    napi_create_string_utf8(env, w->err.data(), w->err.size(), &value);
    napi_set_named_property(env, result, "err", value);
    napi_resolve_deferred(env, w->deferred, result);
  } else {
    napi_value msg;
    napi_value code;
    napi_create_string_utf8(env, "nft async work was cancelled", NAPI_AUTO_LENGTH, &msg);
    napi_create_string_utf8(env, "NG_NFT_ADDON", NAPI_AUTO_LENGTH, &code);
    napi_value error;
    napi_create_error(env, code, msg, &error);
    napi_reject_deferred(env, w->deferred, error);
  }
  napi_delete_reference(env, w->handle_ref);
  napi_delete_async_work(env, w->work);
  delete w;
}

napi_value Run(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc < 3) {
    napi_throw_type_error(env, "NG_NFT_ADDON", "run(handle, commands, flags) takes 3 arguments");
    return nullptr;
  }
  Handle *h = GetHandle(env, argv[0]);
  if (h == nullptr) return nullptr;
  size_t len = 0;
  if (napi_get_value_string_utf8(env, argv[1], nullptr, 0, &len) != napi_ok) {
    napi_throw_type_error(env, "NG_NFT_ADDON", "commands must be a string");
    return nullptr;
  }
  auto *w = new Work();
  w->handle = h;
  w->commands.resize(len + 1);
  CHECK(env, napi_get_value_string_utf8(env, argv[1], w->commands.data(), len + 1, &len));
  w->commands.resize(len);
  uint32_t flags = 0;
  napi_get_value_uint32(env, argv[2], &flags);
  w->flags = flags;
  napi_value promise;
  napi_value name;
  CHECK(env, napi_create_reference(env, argv[0], 1, &w->handle_ref));
  CHECK(env, napi_create_promise(env, &w->deferred, &promise));
  CHECK(env, napi_create_string_utf8(env, "namegate-nft", NAPI_AUTO_LENGTH, &name));
  CHECK(env, napi_create_async_work(env, nullptr, name, Execute, Complete, w, &w->work));
  CHECK(env, napi_queue_async_work(env, w->work));
  return promise;
}

// runSync(handle, commands, flags): the same as run, on the calling thread; returns the object.
napi_value RunSync(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc < 3) {
    napi_throw_type_error(env, "NG_NFT_ADDON", "runSync(handle, commands, flags) takes 3 arguments");
    return nullptr;
  }
  Handle *h = GetHandle(env, argv[0]);
  if (h == nullptr) return nullptr;
  size_t len = 0;
  if (napi_get_value_string_utf8(env, argv[1], nullptr, 0, &len) != napi_ok) {
    napi_throw_type_error(env, "NG_NFT_ADDON", "commands must be a string");
    return nullptr;
  }
  Work w;
  w.handle = h;
  w.commands.resize(len + 1);
  CHECK(env, napi_get_value_string_utf8(env, argv[1], w.commands.data(), len + 1, &len));
  w.commands.resize(len);
  uint32_t flags = 0;
  napi_get_value_uint32(env, argv[2], &flags);
  w.flags = flags;
  Execute(env, &w);
  napi_value result;
  napi_value value;
  CHECK(env, napi_create_object(env, &result));
  napi_create_int32(env, w.rc, &value);
  napi_set_named_property(env, result, "rc", value);
  napi_create_string_utf8(env, w.out.data(), w.out.size(), &value);
  napi_set_named_property(env, result, "out", value);
  napi_create_string_utf8(env, w.err.data(), w.err.size(), &value);
  napi_set_named_property(env, result, "err", value);
  return result;
}

napi_value Close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc < 1) return nullptr;
  Handle *h = GetHandle(env, argv[0]);
  if (h == nullptr) return nullptr;
  // Waits for a run in flight; the Handle itself is freed by the external's finalizer.
  std::lock_guard<std::mutex> guard(h->lock);
  if (h->ctx != nullptr) nft_ctx_free(h->ctx);
  h->ctx = nullptr;
  return nullptr;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", nullptr, Open, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"run", nullptr, Run, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"close", nullptr, Close, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"runSync", nullptr, RunSync, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  CHECK(env, napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props));
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
