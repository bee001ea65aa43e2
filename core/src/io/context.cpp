// The conversions between plugin return codes and Status (io/context.hpp).
#include "io/context.hpp"

#include "registry/registry.hpp"

namespace vdkit {

uint32_t report_to_ctx(vdkit_ctx *ctx, const Status &st) {
    if (st.is_ok()) return VDKIT_OK;
    if (ctx) {
        ctx->error_code = st.code();
        ctx->error_message = st.message();
    }
    return st.code();
}

Status status_from_plugin(vdkit_ctx &ctx, uint32_t rc, std::string_view operation) {
    if (rc == VDKIT_OK) return Status::ok();
    std::string plugin = ctx.plugin ? ctx.plugin->info.name : "plugin";
    if (!ctx.error_message.empty()) return Status(rc, ctx.error_message);
    return Status(rc, std::string(operation) + ": " + plugin + " failed: " + status_text(rc));
}

} // namespace vdkit
