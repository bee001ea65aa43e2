/* vixDiskLib.h -- vdkit's open, VixDiskLib-compatible C API.
 *
 * Programs written for VMware's Virtual Disk Development Kit (VDDK) compile
 * against this header and run on libvixDiskLib.so from vdkit
 * (compat/vixdisklib) unchanged: the functions, structs, constants and error
 * codes have the names, values and layouts of VMware's public API reference
 * (VDDK 6.7/7/8 on 64-bit Linux). This file is vdkit's own text, written from
 * that reference; it is not VMware's header.
 *
 * Units: sectors of VIXDISKLIB_SECTOR_SIZE (512) bytes wherever a name says
 * Sector or capacity; bytes for metadata buffers and SpaceNeededForClone.
 * Errors: every VixError function returns VIX_OK or a VIX_E_* code;
 * VixDiskLib_GetErrorText gives vdkit's message for the last error of the
 * calling thread. docs/compat.md maps every vdkit status to its code and
 * lists every difference from VMware's library.
 * Threads: one disk handle per thread, as VMware documents (several threads
 * may use different handles of one connection); the async calls complete on
 * the library's worker threads. Nothing here calls exit() or abort().
 */
#ifndef _VIXDISKLIB_H_
#define _VIXDISKLIB_H_

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "vm_basic_types.h"

#if defined(__cplusplus)
extern "C" {
#endif

#ifndef _VIX_H_
/* A VIX error is 64 bits wide; the code is in the low 16 bits. */
typedef uint64 VixError;
#define VIX_ERROR_CODE(err) ((err) & 0xFFFF)
#define VIX_SUCCEEDED(err) (VIX_OK == (err))
#define VIX_FAILED(err) (VIX_OK != (err))

/* The VIX error codes (values as VMware's reference lists them). */
enum {
   VIX_OK                                       = 0,
   VIX_E_FAIL                                   = 1,
   VIX_E_OUT_OF_MEMORY                          = 2,
   VIX_E_INVALID_ARG                            = 3,
   VIX_E_FILE_NOT_FOUND                         = 4,
   VIX_E_OBJECT_IS_BUSY                         = 5,
   VIX_E_NOT_SUPPORTED                          = 6,
   VIX_E_FILE_ERROR                             = 7,
   VIX_E_DISK_FULL                              = 8,
   VIX_E_INCORRECT_FILE_TYPE                    = 9,
   VIX_E_CANCELLED                              = 10,
   VIX_E_FILE_READ_ONLY                         = 11,
   VIX_E_FILE_ALREADY_EXISTS                    = 12,
   VIX_E_FILE_ACCESS_ERROR                      = 13,
   VIX_E_REQUIRES_LARGE_FILES                   = 14,
   VIX_E_FILE_ALREADY_LOCKED                    = 15,
   VIX_E_VMDB                                   = 16,
   VIX_E_NOT_SUPPORTED_ON_REMOTE_OBJECT         = 20,
   VIX_E_FILE_TOO_BIG                           = 21,
   VIX_E_FILE_NAME_INVALID                      = 22,
   VIX_E_ALREADY_EXISTS                         = 23,
   VIX_E_BUFFER_TOOSMALL                        = 24,
   VIX_E_OBJECT_NOT_FOUND                       = 25,
   VIX_E_HOST_NOT_CONNECTED                     = 26,
   VIX_E_INVALID_UTF8_STRING                    = 27,
   VIX_E_OPERATION_ALREADY_IN_PROGRESS          = 31,
   VIX_E_UNFINISHED_JOB                         = 29,
   VIX_E_NEED_KEY                               = 30,
   VIX_E_LICENSE                                = 32,
   VIX_E_VM_HOST_DISCONNECTED                   = 34,
   VIX_E_AUTHENTICATION_FAIL                    = 35,
   VIX_E_HOST_CONNECTION_LOST                   = 36,
   VIX_E_DUPLICATE_NAME                         = 41,
   VIX_E_INVALID_HANDLE                         = 1000,
   VIX_E_NOT_SUPPORTED_ON_HANDLE_TYPE           = 1001,
   VIX_E_TOO_MANY_HANDLES                       = 1002,
   VIX_E_NOT_FOUND                              = 2000,
   VIX_E_TYPE_MISMATCH                          = 2001,
   VIX_E_INVALID_XML                            = 2002,
   VIX_E_TIMEOUT_WAITING_FOR_TOOLS              = 3000,
   VIX_E_UNRECOGNIZED_COMMAND                   = 3001,
   VIX_E_OP_NOT_SUPPORTED_ON_GUEST              = 3003,
   VIX_E_PROGRAM_NOT_STARTED                    = 3004,
   VIX_E_CANNOT_START_READ_ONLY_VM              = 3005,
   VIX_E_VM_NOT_RUNNING                         = 3006,
   VIX_E_VM_IS_RUNNING                          = 3007,
   VIX_E_CANNOT_CONNECT_TO_VM                   = 3008,
   VIX_E_POWEROP_SCRIPTS_NOT_AVAILABLE          = 3009,
   VIX_E_NO_GUEST_OS_INSTALLED                  = 3010,
   VIX_E_VM_INSUFFICIENT_HOST_MEMORY            = 3011,
   VIX_E_SUSPEND_ERROR                          = 3012,
   VIX_E_VM_NOT_ENOUGH_CPUS                     = 3013,
   VIX_E_HOST_USER_PERMISSIONS                  = 3014,
   VIX_E_GUEST_USER_PERMISSIONS                 = 3015,
   VIX_E_TOOLS_NOT_RUNNING                      = 3016,
   VIX_E_GUEST_OPERATIONS_PROHIBITED            = 3017,
   VIX_E_ANON_GUEST_OPERATIONS_PROHIBITED       = 3018,
   VIX_E_ROOT_GUEST_OPERATIONS_PROHIBITED       = 3019,
   VIX_E_MISSING_ANON_GUEST_ACCOUNT             = 3023,
   VIX_E_CANNOT_AUTHENTICATE_WITH_GUEST         = 3024,
   VIX_E_UNRECOGNIZED_COMMAND_IN_GUEST          = 3025,
   VIX_E_CONSOLE_GUEST_OPERATIONS_PROHIBITED    = 3026,
   VIX_E_MUST_BE_CONSOLE_USER                   = 3027,
   VIX_E_VMX_MSG_DIALOG_AND_NO_UI               = 3028,
   VIX_E_OPERATION_NOT_ALLOWED_FOR_LOGIN_TYPE   = 3031,
   VIX_E_LOGIN_TYPE_NOT_SUPPORTED               = 3032,
   VIX_E_EMPTY_PASSWORD_NOT_ALLOWED_IN_GUEST    = 3033,
   VIX_E_INTERACTIVE_SESSION_NOT_PRESENT        = 3034,
   VIX_E_INTERACTIVE_SESSION_USER_MISMATCH      = 3035,
   VIX_E_CANNOT_POWER_ON_VM                     = 3041,
   VIX_E_NO_DISPLAY_SERVER                      = 3043,
   VIX_E_TOO_MANY_LOGONS                        = 3046,
   VIX_E_INVALID_AUTHENTICATION_SESSION         = 3047,
   VIX_E_VM_NOT_FOUND                           = 4000,
   VIX_E_NOT_SUPPORTED_FOR_VM_VERSION           = 4001,
   VIX_E_CANNOT_READ_VM_CONFIG                  = 4002,
   VIX_E_TEMPLATE_VM                            = 4003,
   VIX_E_VM_ALREADY_LOADED                      = 4004,
   VIX_E_VM_ALREADY_UP_TO_DATE                  = 4006,
   VIX_E_VM_UNSUPPORTED_GUEST                   = 4011,
   VIX_E_UNRECOGNIZED_PROPERTY                  = 6000,
   VIX_E_INVALID_PROPERTY_VALUE                 = 6001,
   VIX_E_READ_ONLY_PROPERTY                     = 6002,
   VIX_E_MISSING_REQUIRED_PROPERTY              = 6003,
   VIX_E_INVALID_SERIALIZED_DATA                = 6004,
   VIX_E_PROPERTY_TYPE_MISMATCH                 = 6005,
   VIX_E_BAD_VM_INDEX                           = 8000,
   VIX_E_INVALID_MESSAGE_HEADER                 = 10000,
   VIX_E_INVALID_MESSAGE_BODY                   = 10001,
   VIX_E_SNAPSHOT_INVAL                         = 13000,
   VIX_E_SNAPSHOT_DUMPER                        = 13001,
   VIX_E_SNAPSHOT_DISKLIB                       = 13002,
   VIX_E_SNAPSHOT_NOTFOUND                      = 13003,
   VIX_E_SNAPSHOT_EXISTS                        = 13004,
   VIX_E_SNAPSHOT_VERSION                       = 13005,
   VIX_E_SNAPSHOT_NOPERM                        = 13006,
   VIX_E_SNAPSHOT_CONFIG                        = 13007,
   VIX_E_SNAPSHOT_NOCHANGE                      = 13008,
   VIX_E_SNAPSHOT_CHECKPOINT                    = 13009,
   VIX_E_SNAPSHOT_LOCKED                        = 13010,
   VIX_E_SNAPSHOT_INCONSISTENT                  = 13011,
   VIX_E_SNAPSHOT_NAMETOOLONG                   = 13012,
   VIX_E_SNAPSHOT_VIXFILE                       = 13013,
   VIX_E_SNAPSHOT_DISKLOCKED                    = 13014,
   VIX_E_SNAPSHOT_DUPLICATEDDISK                = 13015,
   VIX_E_SNAPSHOT_INDEPENDENTDISK               = 13016,
   VIX_E_SNAPSHOT_NONUNIQUE_NAME                = 13017,
   VIX_E_SNAPSHOT_MEMORY_ON_INDEPENDENT_DISK    = 13018,
   VIX_E_SNAPSHOT_MAXSNAPSHOTS                  = 13019,
   VIX_E_SNAPSHOT_MIN_FREE_SPACE                = 13020,
   VIX_E_SNAPSHOT_HIERARCHY_TOODEEP             = 13021,
   VIX_E_SNAPSHOT_RRSUSPEND                     = 13022,
   VIX_E_SNAPSHOT_NOT_REVERTABLE                = 13024,
   VIX_E_HOST_DISK_INVALID_VALUE                = 14003,
   VIX_E_HOST_DISK_SECTORSIZE                   = 14004,
   VIX_E_HOST_FILE_ERROR_EOF                    = 14005,
   VIX_E_HOST_NETBLKDEV_HANDSHAKE               = 14006,
   VIX_E_HOST_SOCKET_CREATION_ERROR             = 14007,
   VIX_E_HOST_SERVER_NOT_FOUND                  = 14008,
   VIX_E_HOST_NETWORK_CONN_REFUSED              = 14009,
   VIX_E_HOST_TCP_SOCKET_ERROR                  = 14010,
   VIX_E_HOST_TCP_CONN_LOST                     = 14011,
   VIX_E_HOST_NBD_HASHFILE_VOLUME               = 14012,
   VIX_E_HOST_NBD_HASHFILE_INIT                 = 14013,
   VIX_E_DISK_INVAL                             = 16000,
   VIX_E_DISK_NOINIT                            = 16001,
   VIX_E_DISK_NOIO                              = 16002,
   VIX_E_DISK_PARTIALCHAIN                      = 16003,
   VIX_E_DISK_NEEDSREPAIR                       = 16006,
   VIX_E_DISK_OUTOFRANGE                        = 16007,
   VIX_E_DISK_CID_MISMATCH                      = 16008,
   VIX_E_DISK_CANTSHRINK                        = 16009,
   VIX_E_DISK_PARTMISMATCH                      = 16010,
   VIX_E_DISK_UNSUPPORTEDDISKVERSION            = 16011,
   VIX_E_DISK_OPENPARENT                        = 16012,
   VIX_E_DISK_NOTSUPPORTED                      = 16013,
   VIX_E_DISK_NEEDKEY                           = 16014,
   VIX_E_DISK_NOKEYOVERRIDE                     = 16015,
   VIX_E_DISK_NOTENCRYPTED                      = 16016,
   VIX_E_DISK_NOKEY                             = 16017,
   VIX_E_DISK_INVALIDPARTITIONTABLE             = 16018,
   VIX_E_DISK_NOTNORMAL                         = 16019,
   VIX_E_DISK_NOTENCDESC                        = 16020,
   VIX_E_DISK_NEEDVMFS                          = 16022,
   VIX_E_DISK_RAWTOOBIG                         = 16024,
   VIX_E_DISK_TOOMANYOPENFILES                  = 16027,
   VIX_E_DISK_TOOMANYREDO                       = 16028,
   VIX_E_DISK_RAWTOOSMALL                       = 16029,
   VIX_E_DISK_INVALIDCHAIN                      = 16030,
   VIX_E_DISK_KEY_NOTFOUND                      = 16052,
   VIX_E_DISK_SUBSYSTEM_INIT_FAIL               = 16053,
   VIX_E_DISK_INVALID_CONNECTION                = 16054,
   VIX_E_DISK_ENCODING                          = 16061,
   VIX_E_DISK_CANTREPAIR                        = 16062,
   VIX_E_DISK_INVALIDDISK                       = 16063,
   VIX_E_DISK_NOLICENSE                         = 16064,
   VIX_E_DISK_NODEVICE                          = 16065,
   VIX_E_DISK_UNSUPPORTEDDEVICE                 = 16066,
   VIX_E_DISK_CAPACITY_MISMATCH                 = 16067,
   VIX_E_DISK_PARENT_NOTALLOWED                 = 16068,
   VIX_E_DISK_ATTACH_ROOTLINK                   = 16069,
   VIX_E_CRYPTO_UNKNOWN_ALGORITHM               = 17000,
   VIX_E_CRYPTO_BAD_BUFFER_SIZE                 = 17001,
   VIX_E_CRYPTO_INVALID_OPERATION               = 17002,
   VIX_E_CRYPTO_RANDOM_DEVICE                   = 17003,
   VIX_E_CRYPTO_NEED_PASSWORD                   = 17004,
   VIX_E_CRYPTO_BAD_PASSWORD                    = 17005,
   VIX_E_CRYPTO_NOT_IN_DICTIONARY               = 17006,
   VIX_E_CRYPTO_NO_CRYPTO                       = 17007,
   VIX_E_CRYPTO_ERROR                           = 17008,
   VIX_E_CRYPTO_BAD_FORMAT                      = 17009,
   VIX_E_CRYPTO_LOCKED                          = 17010,
   VIX_E_CRYPTO_EMPTY                           = 17011,
   VIX_E_CRYPTO_KEYSAFE_LOCATOR                 = 17012,
   VIX_E_CANNOT_CONNECT_TO_HOST                 = 18000,
   VIX_E_NOT_FOR_REMOTE_HOST                    = 18001,
   VIX_E_INVALID_HOSTNAME_SPECIFICATION         = 18002,
   VIX_E_SCREEN_CAPTURE_ERROR                   = 19000,
   VIX_E_SCREEN_CAPTURE_BAD_FORMAT              = 19001,
   VIX_E_SCREEN_CAPTURE_COMPRESSION_FAIL        = 19002,
   VIX_E_SCREEN_CAPTURE_LARGE_DATA              = 19003,
   VIX_E_GUEST_VOLUMES_NOT_FROZEN               = 20000,
   VIX_E_NOT_A_FILE                             = 20001,
   VIX_E_NOT_A_DIRECTORY                        = 20002,
   VIX_E_NO_SUCH_PROCESS                        = 20003,
   VIX_E_FILE_NAME_TOO_LONG                     = 20004,
   VIX_E_OPERATION_DISABLED                     = 20005,
   VIX_E_TOOLS_INSTALL_NO_IMAGE                 = 21000,
   VIX_E_TOOLS_INSTALL_IMAGE_INACCESIBLE        = 21001,
   VIX_E_TOOLS_INSTALL_NO_DEVICE                = 21002,
   VIX_E_TOOLS_INSTALL_DEVICE_NOT_CONNECTED     = 21003,
   VIX_E_TOOLS_INSTALL_CANCELLED                = 21004,
   VIX_E_TOOLS_INSTALL_INIT_FAILED              = 21005,
   VIX_E_TOOLS_INSTALL_AUTO_NOT_SUPPORTED       = 21006,
   VIX_E_TOOLS_INSTALL_GUEST_NOT_READY          = 21007,
   VIX_E_TOOLS_INSTALL_SIG_CHECK_FAILED         = 21008,
   VIX_E_TOOLS_INSTALL_ERROR                    = 21009,
   VIX_E_TOOLS_INSTALL_ALREADY_UP_TO_DATE       = 21010,
   VIX_E_TOOLS_INSTALL_IN_PROGRESS              = 21011,
   VIX_E_TOOLS_INSTALL_IMAGE_COPY_FAILED        = 21012,
   VIX_E_WRAPPER_WORKSTATION_NOT_INSTALLED      = 22001,
   VIX_E_WRAPPER_VERSION_NOT_FOUND              = 22002,
   VIX_E_WRAPPER_SERVICEPROVIDER_NOT_FOUND      = 22003,
   VIX_E_WRAPPER_PLAYER_NOT_INSTALLED           = 22004,
   VIX_E_WRAPPER_RUNTIME_NOT_INSTALLED          = 22005,
   VIX_E_WRAPPER_MULTIPLE_SERVICEPROVIDERS      = 22006,
   VIX_E_MNTAPI_MOUNTPT_NOT_FOUND               = 24000,
   VIX_E_MNTAPI_MOUNTPT_IN_USE                  = 24001,
   VIX_E_MNTAPI_DISK_NOT_FOUND                  = 24002,
   VIX_E_MNTAPI_DISK_NOT_MOUNTED                = 24003,
   VIX_E_MNTAPI_DISK_IS_MOUNTED                 = 24004,
   VIX_E_MNTAPI_DISK_NOT_SAFE                   = 24005,
   VIX_E_MNTAPI_DISK_CANT_OPEN                  = 24006,
   VIX_E_MNTAPI_CANT_READ_PARTS                 = 24007,
   VIX_E_MNTAPI_UMOUNT_APP_NOT_FOUND            = 24008,
   VIX_E_MNTAPI_UMOUNT                          = 24009,
   VIX_E_MNTAPI_NO_MOUNTABLE_PARTITONS          = 24010,
   VIX_E_MNTAPI_PARTITION_RANGE                 = 24011,
   VIX_E_MNTAPI_PERM                            = 24012,
   VIX_E_MNTAPI_DICT                            = 24013,
   VIX_E_MNTAPI_DICT_LOCKED                     = 24014,
   VIX_E_MNTAPI_OPEN_HANDLES                    = 24015,
   VIX_E_MNTAPI_CANT_MAKE_VAR_DIR               = 24016,
   VIX_E_MNTAPI_NO_ROOT                         = 24017,
   VIX_E_MNTAPI_LOOP_FAILED                     = 24018,
   VIX_E_MNTAPI_DAEMON                          = 24019,
   VIX_E_MNTAPI_INTERNAL                        = 24020,
   VIX_E_MNTAPI_SYSTEM                          = 24021,
   VIX_E_MNTAPI_NO_CONNECTION_DETAILS           = 24022,
   VIX_E_MNTAPI_INCOMPATIBLE_VERSION            = 24300,
   VIX_E_MNTAPI_OS_ERROR                        = 24301,
   VIX_E_MNTAPI_DRIVE_LETTER_IN_USE             = 24302,
   VIX_E_MNTAPI_DRIVE_LETTER_ALREADY_ASSIGNED   = 24303,
   VIX_E_MNTAPI_VOLUME_NOT_MOUNTED              = 24304,
   VIX_E_MNTAPI_VOLUME_ALREADY_MOUNTED          = 24305,
   VIX_E_MNTAPI_FORMAT_FAILURE                  = 24306,
   VIX_E_MNTAPI_NO_DRIVER                       = 24307,
   VIX_E_MNTAPI_ALREADY_OPENED                  = 24308,
   VIX_E_MNTAPI_ITEM_NOT_FOUND                  = 24309,
   VIX_E_MNTAPI_UNSUPPROTED_BOOT_LOADER         = 24310,
   VIX_E_MNTAPI_UNSUPPROTED_OS                  = 24311,
   VIX_E_MNTAPI_CODECONVERSION                  = 24312,
   VIX_E_MNTAPI_REGWRITE_ERROR                  = 24313,
   VIX_E_MNTAPI_UNSUPPORTED_FT_VOLUME           = 24314,
   VIX_E_MNTAPI_PARTITION_NOT_FOUND             = 24315,
   VIX_E_MNTAPI_PUTFILE_ERROR                   = 24316,
   VIX_E_MNTAPI_GETFILE_ERROR                   = 24317,
   VIX_E_MNTAPI_REG_NOT_OPENED                  = 24318,
   VIX_E_MNTAPI_REGDELKEY_ERROR                 = 24319,
   VIX_E_MNTAPI_CREATE_PARTITIONTABLE_ERROR     = 24320,
   VIX_E_MNTAPI_OPEN_FAILURE                    = 24321,
   VIX_E_MNTAPI_VOLUME_NOT_WRITABLE             = 24322,
   VIX_ASYNC                                    = 25000,
   VIX_E_ASYNC_MIXEDMODE_UNSUPPORTED            = 26000,
   VIX_E_NET_HTTP_UNSUPPORTED_PROTOCOL          = 30001,
   VIX_E_NET_HTTP_URL_MALFORMAT                 = 30003,
   VIX_E_NET_HTTP_COULDNT_RESOLVE_PROXY         = 30005,
   VIX_E_NET_HTTP_COULDNT_RESOLVE_HOST          = 30006,
   VIX_E_NET_HTTP_COULDNT_CONNECT               = 30007,
   VIX_E_NET_HTTP_HTTP_RETURNED_ERROR           = 30022,
   VIX_E_NET_HTTP_OPERATION_TIMEDOUT            = 30028,
   VIX_E_NET_HTTP_SSL_CONNECT_ERROR             = 30035,
   VIX_E_NET_HTTP_TOO_MANY_REDIRECTS            = 30047,
   VIX_E_NET_HTTP_TRANSFER                      = 30200,
   VIX_E_NET_HTTP_SSL_SECURITY                  = 30201,
   VIX_E_NET_HTTP_GENERIC                       = 30202,
};
#endif /* _VIX_H_ */

typedef uint64 VixDiskLibSectorType;
#define VIXDISKLIB_SECTOR_SIZE 512

/* QueryAllocatedBlocks: the smallest chunk (sectors) and most chunks per call. */
#define VIXDISKLIB_MIN_CHUNK_SIZE 128
#define VIXDISKLIB_MAX_CHUNK_NUMBER (512 * 1024)

/* Library versions a caller may ask for in Init/InitEx (majorVersion <= 8). */
#define VIXDISKLIB_VERSION_MAJOR 8
#define VIXDISKLIB_VERSION_MINOR 0

typedef struct {
   uint32 cylinders;
   uint32 heads;
   uint32 sectors;
} VixDiskLibGeometry;

typedef enum {
   VIXDISKLIB_DISK_MONOLITHIC_SPARSE = 1, /* one sparse file */
   VIXDISKLIB_DISK_MONOLITHIC_FLAT = 2,   /* descriptor + one preallocated file */
   VIXDISKLIB_DISK_SPLIT_SPARSE = 3,      /* sparse extents of 2 GB */
   VIXDISKLIB_DISK_SPLIT_FLAT = 4,        /* preallocated extents of 2 GB */
   VIXDISKLIB_DISK_VMFS_FLAT = 5,         /* ESX flat */
   VIXDISKLIB_DISK_STREAM_OPTIMIZED = 6,  /* compressed, for streaming */
   VIXDISKLIB_DISK_VMFS_THIN = 7,         /* ESX thin */
   VIXDISKLIB_DISK_VMFS_SPARSE = 8,       /* ESX sparse (not created by vdkit) */
   VIXDISKLIB_DISK_UNKNOWN = 256
} VixDiskLibDiskType;

typedef enum {
   VIXDISKLIB_ADAPTER_IDE = 1,
   VIXDISKLIB_ADAPTER_SCSI_BUSLOGIC = 2,
   VIXDISKLIB_ADAPTER_SCSI_LSILOGIC = 3,
   VIXDISKLIB_ADAPTER_UNKNOWN = 256
} VixDiskLibAdapterType;

#define VIXDISKLIB_HWVERSION_WORKSTATION_4 3
#define VIXDISKLIB_HWVERSION_WORKSTATION_5 4
#define VIXDISKLIB_HWVERSION_WORKSTATION_6 6
#define VIXDISKLIB_HWVERSION_ESX30 VIXDISKLIB_HWVERSION_WORKSTATION_5
#define VIXDISKLIB_HWVERSION_ESX4X 7
#define VIXDISKLIB_HWVERSION_ESX50 8
#define VIXDISKLIB_HWVERSION_ESX51 9
#define VIXDISKLIB_HWVERSION_ESX55 10
#define VIXDISKLIB_HWVERSION_CURRENT VIXDISKLIB_HWVERSION_ESX55

/* Create and Clone parameters. capacity is in sectors. */
typedef struct {
   VixDiskLibDiskType diskType;
   VixDiskLibAdapterType adapterType;
   uint16 hwVersion;
   VixDiskLibSectorType capacity;
} VixDiskLibCreateParams;

typedef enum {
   VIXDISKLIB_CRED_UID = 1,
   VIXDISKLIB_CRED_SESSIONID = 2,
   VIXDISKLIB_CRED_TICKETID = 3,
   VIXDISKLIB_CRED_SSPI = 4,
   VIXDISKLIB_CRED_UNKNOWN = 256
} VixDiskLibCredType;

typedef enum {
   VIXDISKLIB_SPEC_VMX = 0,
   VIXDISKLIB_SPEC_VSTORAGE_OBJECT = 1,
   VIXDISKLIB_SPEC_UNKNOWN = 2
} VixDiskLibSpecType;

typedef struct {
   char *id;
   char *datastoreMoRef;
   char *ssId;
} VixDiskLibVStorageObjectSpec;

/* Connection parameters (the VDDK 6.7 layout). vdkit serves local
 * connections only: vmxSpec, serverName and credentials must be NULL (a
 * vSphere login is refused with VIX_E_CANNOT_CONNECT_TO_HOST). Allocate it
 * with VixDiskLib_AllocateConnectParams or zero it yourself. */
typedef struct VixDiskLibConnectParams {
   char *vmxSpec;
   char *serverName;
   char *thumbPrint;
   long privateUse;
   VixDiskLibCredType credType;
   union VixDiskLibCreds {
      struct VixDiskLibUidPasswdCreds {
         char *userName;
         char *password;
      } uid;
      struct VixDiskLibSessionIdCreds {
         char *cookie;
         char *userName;
         char *key;
      } sessionId;
      struct VixDiskLibTicketIdCreds *ticketId;
   } creds;
   uint32 port;
   uint32 nfcHostPort;
   char *vimApiVer;
   char reserved[8];
   void *reserved2;
   union {
      VixDiskLibVStorageObjectSpec vStorageObjSpec;
   } spec;
   VixDiskLibSpecType specType;
} VixDiskLibConnectParams;

/* Disk information (GetInfo); capacity in sectors. */
typedef struct {
   VixDiskLibGeometry biosGeo;
   VixDiskLibGeometry physGeo;
   VixDiskLibSectorType capacity;
   VixDiskLibAdapterType adapterType;
   int numLinks;
   char *parentFileNameHint;
   char *uuid;
} VixDiskLibInfo;

/* QueryAllocatedBlocks: offset and length in sectors. */
typedef struct {
   VixDiskLibSectorType offset;
   VixDiskLibSectorType length;
} VixDiskLibBlock;

typedef struct {
   uint32 numBlocks;
   VixDiskLibBlock blocks[1];
} VixDiskLibBlockList;

typedef struct VixDiskLibHandleStruct VixDiskLibHandleStruct;
typedef VixDiskLibHandleStruct *VixDiskLibHandle;
struct VixDiskLibConnectParam;
typedef struct VixDiskLibConnectParam *VixDiskLibConnection;

typedef void(VixDiskLibGenericLogFunc)(const char *fmt, va_list args);

#define VIXDISKLIB_FLAG_OPEN_UNBUFFERED (1 << 0)  /* bypass the host page cache (O_DIRECT) */
#define VIXDISKLIB_FLAG_OPEN_SINGLE_LINK (1 << 1) /* open only the named link, not its parents */
#define VIXDISKLIB_FLAG_OPEN_READ_ONLY (1 << 2)   /* open read-only */

/* Progress of Create, Clone, Grow, Shrink, Defragment, CheckRepair: percent
 * 0..100, possibly repeated. Returning FALSE cancels the operation
 * (VIX_E_CANCELLED); VMware's library ignores the value (docs/compat.md). */
typedef Bool (*VixDiskLibProgressFunc)(void *progressData, int percentCompleted);

/* Completion of ReadAsync/WriteAsync, on a library worker thread. */
typedef void (*VixDiskLibCompletionCB)(void *cbData, VixError result);

/* ---- library ---- */
/* Start the library (once per process; nested calls are counted). log and
 * warn receive vdkit's diagnostics; panic is never called (vdkit never
 * aborts). libDir is not needed. configFile: optional "name = value" lines;
 * vdkit reads vdkit.config (a vdkit YAML configuration) and vdkit.pluginPath
 * and logs other keys as ignored. Returns VIX_OK, VIX_E_NOT_SUPPORTED for a
 * major version above 8, VIX_E_FILE_NOT_FOUND or VIX_E_INVALID_ARG for an
 * unreadable or invalid configuration. */
VixError VixDiskLib_InitEx(uint32 majorVersion, uint32 minorVersion, VixDiskLibGenericLogFunc *log,
                           VixDiskLibGenericLogFunc *warn, VixDiskLibGenericLogFunc *panic, const char *libDir,
                           const char *configFile);
/* InitEx without a configuration file. */
VixError VixDiskLib_Init(uint32 majorVersion, uint32 minorVersion, VixDiskLibGenericLogFunc *log,
                         VixDiskLibGenericLogFunc *warn, VixDiskLibGenericLogFunc *panic, const char *libDir);
/* Stop the library (the last of nested Init calls frees it). Close disks and
 * connections first. */
void VixDiskLib_Exit(void);
/* The transport modes vdkit offers, colon-separated ("file:nbd:nbdssl:http:https:s3");
 * a static string. */
const char *VixDiskLib_ListTransportModes(void);
/* Nothing is left behind by vdkit's connections: VIX_OK with 0 and 0. */
VixError VixDiskLib_Cleanup(const VixDiskLibConnectParams *connectParams, uint32 *numCleanedUp, uint32 *numRemaining);

/* ---- connections ---- */
/* A newly allocated, zeroed VixDiskLibConnectParams (free with
 * VixDiskLib_FreeConnectParams, which frees only the struct). NULL when
 * memory runs out. */
VixDiskLibConnectParams *VixDiskLib_AllocateConnectParams(void);
/* Free a struct from AllocateConnectParams, or one from GetConnectParams
 * with its strings. NULL is ignored. */
void VixDiskLib_FreeConnectParams(VixDiskLibConnectParams *connectParams);
/* ConnectEx(connectParams, FALSE, NULL, NULL, connection). */
VixError VixDiskLib_Connect(const VixDiskLibConnectParams *connectParams, VixDiskLibConnection *connection);
/* A local connection: connectParams NULL or without vmxSpec/serverName.
 * readOnly opens every disk read-only. transportModes: the modes disks of
 * this connection may use, colon-separated, NULL for all (see
 * ListTransportModes; a disk's location decides its mode: a path is "file",
 * nbd:// "nbd", nbds:// "nbdssl", http(s):// and s3:// their own). Unknown
 * modes: VIX_E_INVALID_ARG. snapshotRef needs vSphere: ignored without vmxSpec. */
VixError VixDiskLib_ConnectEx(const VixDiskLibConnectParams *connectParams, Bool readOnly, const char *snapshotRef,
                              const char *transportModes, VixDiskLibConnection *connection);
/* Free a connection; its disks must be closed first (else VIX_E_OBJECT_IS_BUSY). */
VixError VixDiskLib_Disconnect(VixDiskLibConnection connection);
/* A copy of the connection's parameters (free with FreeConnectParams). */
VixError VixDiskLib_GetConnectParams(const VixDiskLibConnection connection, VixDiskLibConnectParams **connectParams);
/* vSphere only: VIX_OK (nothing to do) for local parameters. */
VixError VixDiskLib_PrepareForAccess(const VixDiskLibConnectParams *connectParams, const char *identity);
VixError VixDiskLib_EndAccess(const VixDiskLibConnectParams *connectParams, const char *identity);

/* ---- disks ---- */
/* Open a disk of any format vdkit reads (VMDK, VDI, raw, ...) with its chain
 * of parents, by path or URL; flags VIXDISKLIB_FLAG_OPEN_*. */
VixError VixDiskLib_Open(const VixDiskLibConnection connection, const char *path, uint32 flags,
                         VixDiskLibHandle *diskHandle);
/* Wait for async I/O, flush and close. */
VixError VixDiskLib_Close(VixDiskLibHandle diskHandle);
/* Disk information (free with FreeInfo): geometry, capacity in sectors,
 * adapter type (VMDK ddb.adapterType), the number of links in the chain, the
 * parent as the top link names it (NULL for a base) and the UUID. */
VixError VixDiskLib_GetInfo(VixDiskLibHandle diskHandle, VixDiskLibInfo **info);
void VixDiskLib_FreeInfo(VixDiskLibInfo *info);
/* The mode of the disk's transport ("file", "nbd", ...); a static string. */
const char *VixDiskLib_GetTransportMode(VixDiskLibHandle diskHandle);
/* Read or write numSectors sectors at startSector. VIX_E_DISK_OUTOFRANGE
 * past the end; VIX_E_FILE_READ_ONLY writing a read-only disk. */
VixError VixDiskLib_Read(VixDiskLibHandle diskHandle, VixDiskLibSectorType startSector, VixDiskLibSectorType numSectors,
                         uint8 *readBuffer);
VixError VixDiskLib_Write(VixDiskLibHandle diskHandle, VixDiskLibSectorType startSector,
                          VixDiskLibSectorType numSectors, const uint8 *writeBuffer);
/* Queue a read or write; VIX_ASYNC when queued (callback gets the result),
 * another code when refused (callback not called). The buffer must live
 * until the callback runs. */
VixError VixDiskLib_ReadAsync(VixDiskLibHandle diskHandle, VixDiskLibSectorType startSector,
                              VixDiskLibSectorType numSectors, uint8 *readBuffer, VixDiskLibCompletionCB callback,
                              void *cbData);
VixError VixDiskLib_WriteAsync(VixDiskLibHandle diskHandle, VixDiskLibSectorType startSector,
                               VixDiskLibSectorType numSectors, const uint8 *writeBuffer,
                               VixDiskLibCompletionCB callback, void *cbData);
/* Wait until every queued operation of the disk completed. */
VixError VixDiskLib_Wait(VixDiskLibHandle diskHandle);
/* Wait for queued writes and make everything written durable. */
VixError VixDiskLib_Flush(VixDiskLibHandle diskHandle);
/* The allocated ranges in [startSector, startSector+numSectors), in whole
 * chunks of chunkSize sectors (>= VIXDISKLIB_MIN_CHUNK_SIZE; startSector and
 * numSectors multiples of it; at most VIXDISKLIB_MAX_CHUNK_NUMBER chunks).
 * Free the list with FreeBlockList. */
VixError VixDiskLib_QueryAllocatedBlocks(VixDiskLibHandle diskHandle, VixDiskLibSectorType startSector,
                                         VixDiskLibSectorType numSectors, VixDiskLibSectorType chunkSize,
                                         VixDiskLibBlockList **blockList);
VixError VixDiskLib_FreeBlockList(VixDiskLibBlockList *blockList);
/* Metadata of the top link (VMDK: the disk database, keys without "ddb.").
 * ReadMetadata: *requiredLen gets the value's size with its NUL;
 * VIX_E_BUFFER_TOOSMALL when bufLen is smaller; VIX_E_DISK_KEY_NOTFOUND. */
VixError VixDiskLib_ReadMetadata(VixDiskLibHandle diskHandle, const char *key, char *buf, size_t bufLen,
                                 size_t *requiredLen);
VixError VixDiskLib_WriteMetadata(VixDiskLibHandle diskHandle, const char *key, const char *val);
/* The keys, each NUL-terminated, then one more NUL; VIX_E_BUFFER_TOOSMALL
 * (with *requiredLen) when maxLen is too small or keys is NULL. */
VixError VixDiskLib_GetMetadataKeys(VixDiskLibHandle diskHandle, char *keys, size_t maxLen, size_t *requiredLen);

/* ---- images ---- */
/* Create a disk; its format follows the path's extension (.vdi VDI, .img or
 * .raw raw, else VMDK of createParams->diskType). */
VixError VixDiskLib_Create(const VixDiskLibConnection connection, const char *path,
                           const VixDiskLibCreateParams *createParams, VixDiskLibProgressFunc progressFunc,
                           void *progressCallbackData);
/* Create a differencing disk over the open disk (VMDK sparse, or the
 * format of childPath's extension). */
VixError VixDiskLib_CreateChild(VixDiskLibHandle diskHandle, const char *childPath, VixDiskLibDiskType diskType,
                                VixDiskLibProgressFunc progressFunc, void *progressCallbackData);
/* Copy srcPath's whole chain into a new disk dstPath (format by extension;
 * VMDK subformat, adapter and hardware version from vixCreateParams).
 * Staged and published whole: on failure dstPath is untouched. */
VixError VixDiskLib_Clone(const VixDiskLibConnection dstConnection, const char *dstPath,
                          const VixDiskLibConnection srcConnection, const char *srcPath,
                          const VixDiskLibCreateParams *vixCreateParams, VixDiskLibProgressFunc progressFunc,
                          void *progressCallbackData, Bool overWrite);
/* Grow the disk at path to capacity sectors (never shrinks:
 * VIX_E_INVALID_ARG). */
VixError VixDiskLib_Grow(VixDiskLibConnection connection, const char *path, VixDiskLibSectorType capacity,
                         Bool updateGeometry, VixDiskLibProgressFunc progressFunc, void *progressCallbackData);
/* Give back the top link's unused and zero blocks (vdkit's compact). */
VixError VixDiskLib_Shrink(VixDiskLibHandle diskHandle, VixDiskLibProgressFunc progressFunc,
                           void *progressCallbackData);
/* The same compaction (vdkit's layout has nothing else to defragment). */
VixError VixDiskLib_Defragment(VixDiskLibHandle diskHandle, VixDiskLibProgressFunc progressFunc,
                               void *progressCallbackData);
/* Rename a disk with all its files; children beside it are relinked. */
VixError VixDiskLib_Rename(const char *srcFileName, const char *dstFileName);
/* Delete a disk with all its files (refused while disks beside it are built on it). */
VixError VixDiskLib_Unlink(VixDiskLibConnection connection, const char *path);
/* Whether child (opened SINGLE_LINK) can go on top of parent; Attach does
 * it: child becomes the whole chain, parent's handle only needs Close. */
VixError VixDiskLib_IsAttachPossible(VixDiskLibHandle parent, VixDiskLibHandle child);
VixError VixDiskLib_Attach(VixDiskLibHandle parent, VixDiskLibHandle child);
/* Bytes a clone of the disk as cloneDiskType would take (UNKNOWN: the
 * disk's own format). */
VixError VixDiskLib_SpaceNeededForClone(VixDiskLibHandle diskHandle, VixDiskLibDiskType cloneDiskType,
                                        uint64 *spaceNeeded);
/* Check the disk at filename (and repair with repair = TRUE); findings go to
 * the log callback. VIX_OK when consistent or repaired;
 * VIX_E_DISK_NEEDSREPAIR when errors remain. */
VixError VixDiskLib_CheckRepair(const VixDiskLibConnection connection, const char *filename, Bool repair);

/* ---- errors ---- */
/* A newly allocated text for err (free with FreeErrorText): the code's
 * description, and when err is the calling thread's last error, vdkit's
 * message naming what failed. locale must be NULL. */
char *VixDiskLib_GetErrorText(VixError err, const char *locale);
void VixDiskLib_FreeErrorText(char *errMsg);

/* vdkit extension (not in VMware's library): the VIX code a vdkit status
 * (vdkit/status.h) maps to, as docs/compat.md lists. */
VixError VixDiskLib_VdkitErrorFromStatus(uint32 vdkitStatus);

#if defined(__cplusplus)
}
#endif

#endif /* _VIXDISKLIB_H_ */
