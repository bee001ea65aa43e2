// The VIX error codes vdkit reports, and their texts (docs/compat.md lists
// the same table; tests/vix_errors_test.py checks the two agree).
#include "vix_internal.hpp"

namespace vix {

VixError from_status(uint32_t status) {
    switch (status) {
    case VDKIT_OK:
        return VIX_OK;
    case VDKIT_E_INVALID_ARGUMENT:
        return VIX_E_INVALID_ARG;
    case VDKIT_E_NOT_SUPPORTED:
        return VIX_E_NOT_SUPPORTED;
    case VDKIT_E_NOT_FOUND:
        return VIX_E_FILE_NOT_FOUND;
    case VDKIT_E_IO:
        return VIX_E_FILE_ERROR;
    case VDKIT_E_CORRUPT:
        return VIX_E_DISK_INVALIDDISK;
    case VDKIT_E_NO_MEMORY:
        return VIX_E_OUT_OF_MEMORY;
    case VDKIT_E_BUSY:
        return VIX_E_FILE_ALREADY_LOCKED;
    case VDKIT_E_READ_ONLY:
        return VIX_E_FILE_READ_ONLY;
    case VDKIT_E_INTERNAL:
        return VIX_E_FAIL;
    case VDKIT_E_ABI:
        return VIX_E_DISK_SUBSYSTEM_INIT_FAIL;
    case VDKIT_E_UNALLOCATED:
        return VIX_E_FAIL;
    case VDKIT_E_OUT_OF_RANGE:
        return VIX_E_DISK_OUTOFRANGE;
    case VDKIT_E_EXISTS:
        return VIX_E_FILE_ALREADY_EXISTS;
    case VDKIT_E_CANCELLED:
        return VIX_E_CANCELLED;
    case VDKIT_E_PERMISSION:
        return VIX_E_FILE_ACCESS_ERROR;
    case VDKIT_E_AMBIGUOUS:
        return VIX_E_INCORRECT_FILE_TYPE;
    case VDKIT_E_CONFIG:
        return VIX_E_INVALID_ARG;
    case VDKIT_E_PARENT_MISMATCH:
        return VIX_E_DISK_CID_MISMATCH;
    case VDKIT_E_BLOCK_FREE:
        return VIX_E_FAIL;
    default:
        return VIX_E_FAIL;
    }
}

const char *code_text(VixError err) {
    switch (VIX_ERROR_CODE(err)) {
    case VIX_OK:
        return "The operation was successful";
    case VIX_E_FAIL:
        return "Unknown error";
    case VIX_E_OUT_OF_MEMORY:
        return "Memory allocation failed: out of memory";
    case VIX_E_INVALID_ARG:
        return "One of the parameters was invalid";
    case VIX_E_FILE_NOT_FOUND:
        return "A file was not found";
    case VIX_E_OBJECT_IS_BUSY:
        return "This function cannot be performed because the handle is executing another function";
    case VIX_E_NOT_SUPPORTED:
        return "The operation is not supported";
    case VIX_E_FILE_ERROR:
        return "A file access error occurred on the host or guest operating system";
    case VIX_E_DISK_FULL:
        return "An error occurred while writing a file; the disk is full";
    case VIX_E_INCORRECT_FILE_TYPE:
        return "An error occurred while accessing a file: wrong file type";
    case VIX_E_CANCELLED:
        return "The operation was canceled";
    case VIX_E_FILE_READ_ONLY:
        return "The file is write-protected";
    case VIX_E_FILE_ALREADY_EXISTS:
        return "The file already exists";
    case VIX_E_FILE_ACCESS_ERROR:
        return "You do not have access rights to this file";
    case VIX_E_FILE_ALREADY_LOCKED:
        return "The file is already in use";
    case VIX_E_BUFFER_TOOSMALL:
        return "Buffer is too small";
    case VIX_E_INVALID_HANDLE:
        return "The handle is not a valid VIX object";
    case VIX_E_CANNOT_CONNECT_TO_HOST:
        return "Cannot connect to host";
    case VIX_E_DISK_INVAL:
        return "One of the parameters supplied is invalid";
    case VIX_E_DISK_NOINIT:
        return "The disk library has not been initialized";
    case VIX_E_DISK_OUTOFRANGE:
        return "The called function requested more blocks than are available";
    case VIX_E_DISK_CID_MISMATCH:
        return "The parent virtual disk has been modified since the child was created";
    case VIX_E_DISK_NEEDSREPAIR:
        return "The specified virtual disk needs repair";
    case VIX_E_DISK_KEY_NOTFOUND:
        return "The specified key was not found in the disk data base";
    case VIX_E_DISK_SUBSYSTEM_INIT_FAIL:
        return "Failed to initialize the disk library";
    case VIX_E_DISK_INVALID_CONNECTION:
        return "Invalid connection handle";
    case VIX_E_DISK_INVALIDDISK:
        return "The disk is corrupted or not a virtual disk";
    case VIX_ASYNC:
        return "The operation was queued and completes asynchronously";
    default:
        return "VIX error";
    }
}

} // namespace vix

extern "C" VIX_EXPORT VixError VixDiskLib_VdkitErrorFromStatus(uint32 vdkitStatus) {
    return vix::from_status(vdkitStatus);
}
