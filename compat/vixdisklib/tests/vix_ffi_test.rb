# A Ruby client of libvixDiskLib bound with ruby-ffi the way the
# ffi-vix_disk_lib gem binds VMware's library (the function names, argument
# lists and structs of ../shared/seeds/vixdisklib-api.txt). It creates,
# opens, writes, reads, reads and writes metadata, creates a child and
# clones; vix_test.sh judges the files it leaves with qemu-img.
#
#   ruby vix_ffi_test.rb LIBRARY WORKDIR
require "ffi"
require "fileutils"

LIBRARY, WORK = ARGV
FileUtils.mkdir_p(WORK)

module Vix
  extend FFI::Library
  ffi_lib LIBRARY

  typedef :uint64, :VixError
  typedef :pointer, :Connection
  typedef :uint64, :SectorType

  class Geometry < FFI::Struct
    layout :cylinders, :uint32, :heads, :uint32, :sectors, :uint32
  end

  class Info < FFI::Struct
    layout :biosGeo, Geometry, :physGeo, Geometry, :capacity, :SectorType,
           :adapterType, :int, :numLinks, :int, :parentFileNameHint, :pointer, :uuid, :pointer
  end

  class CreateParams < FFI::Struct
    layout :diskType, :int, :adapterType, :int, :hwVersion, :uint16, :capacity, :SectorType
  end

  # The gem's ConnectParams_6_5_0 layout (what VixDiskLib 6.5 and later take).
  class ConnectParams < FFI::Struct
    layout :vmxSpec, :pointer, :serverName, :pointer, :thumbPrint, :pointer, :privateUse, :long,
           :credType, :int, :userName, :pointer, :password, :pointer, :key, :pointer,
           :port, :uint32, :nfcHostPort, :uint32, :vimApiVer, :pointer, :reserved, [:char, 8],
           :reserved2, :pointer, :id, :pointer, :datastoreMoRef, :pointer, :ssId, :pointer, :specType, :int
  end

  callback :GenericLogFunc, [:string, :pointer], :void
  callback :ProgressFunc, [:pointer, :int], :bool

  attach_function :init, :VixDiskLib_Init, [:uint32, :uint32, :GenericLogFunc, :GenericLogFunc, :GenericLogFunc, :pointer], :VixError
  attach_function :exit, :VixDiskLib_Exit, [], :void
  attach_function :connect, :VixDiskLib_Connect, [ConnectParams, :pointer], :VixError
  attach_function :connect_ex, :VixDiskLib_ConnectEx, [ConnectParams, :bool, :pointer, :pointer, :pointer], :VixError
  attach_function :disconnect, :VixDiskLib_Disconnect, [:Connection], :VixError
  attach_function :create, :VixDiskLib_Create, [:Connection, :pointer, CreateParams, :ProgressFunc, :pointer], :VixError
  attach_function :create_child, :VixDiskLib_CreateChild, [:pointer, :pointer, :int, :ProgressFunc, :pointer], :VixError
  attach_function :open, :VixDiskLib_Open, [:Connection, :pointer, :uint32, :pointer], :VixError
  attach_function :close, :VixDiskLib_Close, [:pointer], :VixError
  attach_function :get_info, :VixDiskLib_GetInfo, [:pointer, :pointer], :VixError
  attach_function :free_info, :VixDiskLib_FreeInfo, [:pointer], :void
  attach_function :read, :VixDiskLib_Read, [:pointer, :SectorType, :SectorType, :pointer], :VixError
  attach_function :write, :VixDiskLib_Write, [:pointer, :SectorType, :SectorType, :pointer], :VixError
  attach_function :read_metadata, :VixDiskLib_ReadMetadata, [:pointer, :pointer, :pointer, :size_t, :pointer], :VixError
  attach_function :write_metadata, :VixDiskLib_WriteMetadata, [:pointer, :pointer, :pointer], :VixError
  attach_function :get_metadata_keys, :VixDiskLib_GetMetadataKeys, [:pointer, :pointer, :size_t, :pointer], :VixError
  attach_function :clone, :VixDiskLib_Clone, [:Connection, :pointer, :Connection, :pointer, CreateParams, :ProgressFunc, :pointer, :bool], :VixError
  attach_function :get_error_text, :VixDiskLib_GetErrorText, [:VixError, :pointer], :pointer
  attach_function :free_error_text, :VixDiskLib_FreeErrorText, [:pointer], :void
  attach_function :list_transport_modes, :VixDiskLib_ListTransportModes, [], :pointer
  attach_function :get_transport_mode, :VixDiskLib_GetTransportMode, [:pointer], :pointer
  attach_function :space_needed_for_clone, :VixDiskLib_SpaceNeededForClone, [:pointer, :int, :pointer], :VixError
  attach_function :check_repair, :VixDiskLib_CheckRepair, [:Connection, :pointer, :bool], :VixError
end

$failures = 0
def check(cond, what)
  return if cond
  puts "FAIL: #{what}"
  $failures += 1
end

def vix!(err, what)
  return if err.zero?
  ptr = Vix.get_error_text(err, nil)
  text = ptr.null? ? "" : ptr.read_string
  Vix.free_error_text(ptr)
  abort "FAIL: #{what}: error #{err}: #{text}"
end

def str(s) = FFI::MemoryPointer.from_string(s)

LOG = proc { |_fmt, _args| }
PROGRESS = proc { |_data, _percent| true }

vix!(Vix.init(6, 5, LOG, LOG, LOG, nil), "Init")
modes = Vix.list_transport_modes.read_string
check(modes.split(":").include?("file") && modes.split(":").include?("nbd"), "transport modes #{modes}")

params = Vix::ConnectParams.new
conn_ptr = FFI::MemoryPointer.new(:pointer)
vix!(Vix.connect(params, conn_ptr), "Connect")
conn = conn_ptr.read_pointer

# Refused: a vSphere login.
remote = Vix::ConnectParams.new
remote[:serverName] = str("vcenter.example.com")
remote_ptr = FFI::MemoryPointer.new(:pointer)
err = Vix.connect_ex(remote, true, nil, nil, remote_ptr)
check(err == 18_000, "a vSphere login gives VIX_E_CANNOT_CONNECT_TO_HOST, not #{err}")
text_ptr = Vix.get_error_text(err, nil)
check(text_ptr.read_string.include?("vcenter.example.com"), "the error text names the server")
Vix.free_error_text(text_ptr)

base = File.join(WORK, "base.vmdk")
cp = Vix::CreateParams.new
cp[:diskType] = 1 # monolithic sparse
cp[:adapterType] = 3 # lsilogic
cp[:hwVersion] = 7
cp[:capacity] = 8192
vix!(Vix.create(conn, str(base), cp, PROGRESS, nil), "Create")

handle_ptr = FFI::MemoryPointer.new(:pointer)
vix!(Vix.open(conn, str(base), 0, handle_ptr), "Open")
disk = handle_ptr.read_pointer
check(Vix.get_transport_mode(disk).read_string == "file", "transport mode file")

info_ptr = FFI::MemoryPointer.new(:pointer)
vix!(Vix.get_info(disk, info_ptr), "GetInfo")
info = Vix::Info.new(info_ptr.read_pointer)
check(info[:capacity] == 8192, "capacity #{info[:capacity]}")
check(info[:adapterType] == 3, "adapter type #{info[:adapterType]}")
check(info[:numLinks] == 1, "links #{info[:numLinks]}")
Vix.free_info(info.pointer)

data = (0...(16 * 512)).map { |i| (i * 7 + 3) % 256 }.pack("C*")
wbuf = FFI::MemoryPointer.new(:uint8, data.bytesize)
wbuf.put_bytes(0, data)
vix!(Vix.write(disk, 64, 16, wbuf), "Write")
rbuf = FFI::MemoryPointer.new(:uint8, data.bytesize)
vix!(Vix.read(disk, 64, 16, rbuf), "Read")
check(rbuf.get_bytes(0, data.bytesize) == data, "read back what was written")

vix!(Vix.write_metadata(disk, str("rubyKey"), str("ruby value")), "WriteMetadata")
need = FFI::MemoryPointer.new(:size_t)
err = Vix.read_metadata(disk, str("rubyKey"), nil, 0, need)
check(err == 24, "ReadMetadata without a buffer gives VIX_E_BUFFER_TOOSMALL, not #{err}")
val = FFI::MemoryPointer.new(:char, need.read(:size_t))
vix!(Vix.read_metadata(disk, str("rubyKey"), val, need.read(:size_t), nil), "ReadMetadata")
check(val.read_string == "ruby value", "metadata value #{val.read_string.inspect}")
err = Vix.get_metadata_keys(disk, nil, 0, need)
check(err == 24, "GetMetadataKeys without a buffer gives VIX_E_BUFFER_TOOSMALL")
keys = FFI::MemoryPointer.new(:char, need.read(:size_t))
vix!(Vix.get_metadata_keys(disk, keys, need.read(:size_t), nil), "GetMetadataKeys")
list = keys.get_bytes(0, need.read(:size_t)).split("\0")
check(list.include?("rubyKey") && list.include?("adapterType"), "metadata keys #{list.inspect}")
err = Vix.read_metadata(disk, str("noSuchKey"), val, 10, nil)
check(err == 16_052, "a missing key gives VIX_E_DISK_KEY_NOTFOUND, not #{err}")

space = FFI::MemoryPointer.new(:uint64)
vix!(Vix.space_needed_for_clone(disk, 2, space), "SpaceNeededForClone")
check(space.read(:uint64) >= 8192 * 512, "a flat clone needs at least the capacity")

child = File.join(WORK, "child.vmdk")
vix!(Vix.create_child(disk, str(child), 1, PROGRESS, nil), "CreateChild")
vix!(Vix.close(disk), "Close")

vix!(Vix.open(conn, str(child), 0, handle_ptr), "Open child")
disk = handle_ptr.read_pointer
vix!(Vix.get_info(disk, info_ptr), "GetInfo child")
info = Vix::Info.new(info_ptr.read_pointer)
check(info[:numLinks] == 2, "child links #{info[:numLinks]}")
check(info[:parentFileNameHint].read_string == "base.vmdk", "child parent hint")
Vix.free_info(info.pointer)
vix!(Vix.read(disk, 64, 16, rbuf), "Read through the child")
check(rbuf.get_bytes(0, data.bytesize) == data, "the child reads the base's data")
vix!(Vix.close(disk), "Close child")

clone_params = Vix::CreateParams.new
clone_params[:diskType] = 1
vix!(Vix.clone(conn, str(File.join(WORK, "clone.vdi")), conn, str(base), clone_params, PROGRESS, nil, false), "Clone")
vix!(Vix.check_repair(conn, str(base), false), "CheckRepair")
vix!(Vix.disconnect(conn), "Disconnect")
Vix.exit

if $failures.zero?
  puts "ruby client: all checks passed"
else
  exit 1
end
