// bindings/python/src/module.cpp — vdkit._vdkit, the compiled half of the
// Python package `vdkit` (bindings/python/vdkit/ is the other half).
//
// Built on the public C++ API only (core/include/vdkit/*.hpp): a Status that
// is not OK becomes a vdkit.Error (a subclass per code, vdkit/errors.py);
// every call that may do I/O or wait runs with the GIL released, so other
// Python threads run meanwhile (a Disk takes concurrent reads, see vdkit.hpp).
// Callbacks into Python (log, progress) take the GIL back on whatever
// thread the core calls them from.
#include "vdkit/vdkit.hpp"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

namespace py = pybind11;
using namespace vdkit;

namespace {

// ---- errors -----------------------------------------------------------------------

// Raise the vdkit.Error subclass for s (vdkit.errors.from_status builds it).
[[noreturn]] void raise_status(const Status &s) {
    py::object error = py::module_::import("vdkit.errors").attr("from_status")(s.code(), s.message());
    PyErr_SetObject(reinterpret_cast<PyObject *>(Py_TYPE(error.ptr())), error.ptr());
    throw py::error_already_set();
}

void check(const Status &s) {
    if (!s) raise_status(s);
}

template <class T> T take(Result<T> r) {
    if (!r) raise_status(r.status());
    return std::move(r).value();
}

// Run f with the GIL released (the core may block or call back into
// Python from its own threads meanwhile); its result is returned with the GIL held.
template <class F> auto without_gil(F &&f) {
    py::gil_scoped_release nogil;
    return f();
}

// ---- arguments --------------------------------------------------------------------

// Option values as the core takes them: text; Python bools as "true"/"false".
Options to_options(const std::optional<py::dict> &dict) {
    Options out;
    if (!dict) return out;
    for (const auto &[key, value] : *dict) {
        std::string text;
        if (py::isinstance<py::bool_>(value))
            text = value.cast<bool>() ? "true" : "false";
        else if (py::isinstance<py::str>(value) || py::isinstance<py::int_>(value))
            text = py::str(value);
        else
            throw py::type_error("option " + std::string(py::str(key)) + ": expected str, int or bool, got " +
                                 std::string(py::str(py::type::of(value).attr("__name__"))));
        out[py::str(key)] = std::move(text);
    }
    return out;
}

std::string path_text(const std::filesystem::path &p) {
    return p.string();
}

// A contiguous buffer of a Python object (bytes, bytearray, memoryview,
// numpy array ...), held while the GIL is released.
class BufferView {
public:
    BufferView(py::handle obj, bool writable) {
        if (PyObject_GetBuffer(obj.ptr(), &view_, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) != 0)
            throw py::error_already_set();
    }
    ~BufferView() { PyBuffer_Release(&view_); }
    BufferView(const BufferView &) = delete;
    BufferView &operator=(const BufferView &) = delete;
    void *data() const { return view_.buf; }
    uint64_t size() const { return static_cast<uint64_t>(view_.len); }

private:
    Py_buffer view_{};
};

// [offset, offset+len) within the disk; checked before a buffer of len bytes
// is allocated for it, so a wrong length is an error rather than a huge allocation.
void check_range(const Disk &disk, uint64_t offset, uint64_t len) {
    if (offset > disk.size() || len > disk.size() - offset)
        raise_status(Status(VDKIT_E_OUT_OF_RANGE, "range [" + std::to_string(offset) + ", +" + std::to_string(len) +
                                                      ") is beyond the end of the disk (" +
                                                      std::to_string(disk.size()) + " bytes)"));
}

// ---- Python objects kept by the core --------------------------------------------

// A Python object the core may drop on any thread (the log callback lives
// as long as the library's plugins): released under the GIL, or leaked when
// the interpreter is already gone.
std::shared_ptr<py::object> keep(py::object obj) {
    return std::shared_ptr<py::object>(new py::object(std::move(obj)), [](py::object *p) {
        if (Py_IsInitialized()) {
            py::gil_scoped_acquire gil;
            delete p;
        } else {
            p->release(); // nothing left to drop it into
            delete p;
        }
    });
}

const char *level_name(LogLevel level) {
    switch (level) {
    case LogLevel::error:
        return "error";
    case LogLevel::warning:
        return "warning";
    case LogLevel::info:
        return "info";
    case LogLevel::debug:
        return "debug";
    }
    return "debug";
}

std::optional<LogLevel> parse_level(const std::optional<std::string> &name) {
    if (!name) return std::nullopt;
    for (LogLevel l : {LogLevel::error, LogLevel::warning, LogLevel::info, LogLevel::debug})
        if (*name == level_name(l)) return l;
    raise_status(
        Status(VDKIT_E_INVALID_ARGUMENT, "log_level \"" + *name + "\": expected error, warning, info or debug"));
}

// ---- cancel and progress ----------------------------------------------------------

// vdkit.Cancel: set from any thread (no GIL needed) to stop a copy or convert.
struct CancelToken {
    std::atomic<bool> requested{false};
};

// The ProgressFunction a copy sees: the token, then the Python callable
// (under the GIL; False cancels, None or a true value goes on). An
// exception the callable raises cancels the copy and is raised again
// afterwards in place of CancelledError.
class Progress {
public:
    Progress(py::object callback, std::shared_ptr<CancelToken> token)
        : callback_(std::move(callback)), token_(token ? std::move(token) : std::make_shared<CancelToken>()) {}

    ProgressFunction function() {
        return [this](uint64_t done, uint64_t total) -> bool {
            if (token_->requested.load()) return false;
            if (callback_.is_none()) return true;
            py::gil_scoped_acquire gil;
            if (error_) return false;
            try {
                py::object answer = callback_(done, total);
                if (answer.is_none() || PyObject_IsTrue(answer.ptr()) == 1) return !token_->requested.load();
                if (PyErr_Occurred()) throw py::error_already_set();
                return false;
            } catch (py::error_already_set &e) {
                error_ = std::move(e);
                return false;
            }
        };
    }
    CancelToken &token() { return *token_; }
    // Raise what the callable raised, if it did (call with the GIL).
    void reraise() {
        if (!error_) return;
        py::error_already_set e = std::move(*error_);
        error_.reset();
        e.restore();
        throw py::error_already_set();
    }

private:
    py::object callback_;
    std::shared_ptr<CancelToken> token_;
    std::optional<py::error_already_set> error_;
};

// Run op on its own thread with the GIL released; meanwhile this (the
// calling) thread wakes every 100 ms to let Python handle signals, so
// Ctrl-C cancels the copy through the token (KeyboardInterrupt is raised
// once op has stopped).
Status run_interruptible(const std::function<Status()> &op, CancelToken &token) {
    std::mutex m;
    std::condition_variable cv;
    bool finished = false;
    Status result;
    bool interrupted = false;
    std::optional<py::error_already_set> signal_error;
    {
        py::gil_scoped_release nogil;
        std::thread worker([&] {
            Status s = op();
            std::lock_guard<std::mutex> lock(m);
            result = std::move(s);
            finished = true;
            cv.notify_all();
        });
        std::unique_lock<std::mutex> lock(m);
        while (!finished) {
            if (cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return finished; })) break;
            if (interrupted) continue;
            lock.unlock();
            {
                py::gil_scoped_acquire gil;
                if (PyErr_CheckSignals() != 0) {
                    signal_error.emplace();
                    interrupted = true;
                    token.requested.store(true);
                }
            }
            lock.lock();
        }
        lock.unlock();
        worker.join();
    }
    if (signal_error) {
        signal_error->restore();
        throw py::error_already_set();
    }
    return result;
}

// ---- disks ------------------------------------------------------------------------

py::object uuid_object(const Uuid &u) {
    return py::module_::import("uuid").attr("UUID")(py::arg("bytes") =
                                                        py::bytes(reinterpret_cast<const char *>(u.data()), u.size()));
}

py::tuple geometry_tuple(const Geometry &g) {
    return py::make_tuple(g.cylinders, g.heads, g.sectors);
}

// vdkit.BlockState (vdkit/__init__.py) numbers the states as these do.
static_assert(static_cast<uint32_t>(BlockState::data) == VDKIT_BLOCK_DATA &&
              static_cast<uint32_t>(BlockState::zero) == VDKIT_BLOCK_ZERO &&
              static_cast<uint32_t>(BlockState::unallocated) == VDKIT_BLOCK_UNALLOCATED);

// Disk.block_status(): the runs of [offset, end), one core call per run.
struct BlockRuns {
    py::object owner; // the vdkit.Disk, kept alive while iterating
    Disk *disk;
    uint64_t pos;
    uint64_t end;

    py::tuple next() {
        if (pos >= end) throw py::stop_iteration();
        BlockRun r = take(without_gil([&] { return disk->block_status(pos, end - pos); }));
        if (r.offset != pos || r.length == 0 || r.length > end - pos)
            raise_status(Status(VDKIT_E_INTERNAL, "block status at offset " + std::to_string(pos) +
                                                      " answered the run [" + std::to_string(r.offset) + ", +" +
                                                      std::to_string(r.length) + ")"));
        pos += r.length;
        py::object state = py::module_::import("vdkit").attr("BlockState")(static_cast<uint32_t>(r.state));
        return py::make_tuple(r.offset, r.length, state);
    }
};

std::unique_ptr<Disk> open_disk(const Library &lib, const std::string &path, const OpenOptions &o) {
    return take(without_gil([&] { return lib.open(path, o); }));
}

Status copy_disks(const Library &lib, const Disk &src, Disk &dst, CopyOptions copy, Progress &progress) {
    copy.progress = progress.function();
    Status s = run_interruptible([&] { return lib.copy(src, dst, copy); }, progress.token());
    progress.reraise();
    return s;
}

// Library.convert with a path source: Library::convert does the whole job
// (staged beside dst, published without replacing unless overwrite, verified
// on request, nothing left behind on failure, cancel or Ctrl-C).
void convert_path(const Library &lib, const std::filesystem::path &src_path, const std::filesystem::path &dst_path,
                  ConvertOptions co, Progress &progress) {
    co.progress = progress.function();
    Status s = run_interruptible(
        [&]() -> Status {
            Result<ConvertResult> r = lib.convert(path_text(src_path), path_text(dst_path), co);
            return r ? Status() : r.status();
        },
        progress.token());
    progress.reraise();
    check(s);
}

// convert's verify step for a copy: CORRUPT naming the first offset at which
// dst reads differently from src.
Status verify_copy(const Disk &src, const Disk &dst, const std::filesystem::path &dst_path) {
    Result<std::optional<uint64_t>> r = Library::compare(src, dst);
    if (!r) return r.status();
    if (!r.value()) return Status();
    return Status(VDKIT_E_CORRUPT, path_text(dst_path) + ": reads differently from the source at byte offset " +
                                       std::to_string(*r.value()) + " after the copy");
}

// Library.convert with an open Disk as the source: the core's convert opens
// its source itself, so this creates dst and copies into it, deleting dst
// again on failure, cancel or Ctrl-C (no staging; dst never replaces a file).
void convert_open_disk(const Library &lib, const Disk &src, const std::filesystem::path &dst_path,
                       const ConvertOptions &co, Progress &progress) {
    if (co.overwrite) throw py::value_error("overwrite applies only when src is a path");
    CreateOptions create;
    create.format = co.target_format;
    create.size = src.size();
    create.options = co.target_options;
    std::unique_ptr<Disk> dst = take(without_gil([&] { return lib.create_image(path_text(dst_path), create); }));
    CopyOptions copy;
    copy.target_is_zero = true; // a new image
    copy.threads = co.threads;
    Status s;
    try {
        s = copy_disks(lib, src, *dst, copy, progress);
        if (s) s = without_gil([&] { return dst->flush(); });
        if (s && co.verify) s = without_gil([&] { return verify_copy(src, *dst, dst_path); });
    } catch (...) { // the progress callable raised, or Ctrl-C
        py::gil_scoped_release nogil;
        dst->close_and_delete().ignore();
        throw;
    }
    {
        py::gil_scoped_release nogil;
        if (!s)
            dst->close_and_delete().ignore(); // never leave a half-written target
        else
            s = dst->close();
    }
    check(s);
}

void convert_to_new_image(const Library &lib, py::object src_arg, const std::filesystem::path &dst_path,
                          const std::string &format, std::optional<py::dict> options,
                          std::optional<std::string> src_format, py::object progress,
                          std::shared_ptr<CancelToken> cancel, unsigned threads, bool overwrite, bool verify) {
    ConvertOptions co;
    co.target_format = format;
    co.target_options = to_options(options);
    co.threads = threads;
    co.overwrite = overwrite;
    co.verify = verify;
    Progress p(std::move(progress), std::move(cancel));
    if (py::isinstance<Disk>(src_arg)) {
        if (src_format) throw py::type_error("src_format applies only when src is a path");
        convert_open_disk(lib, src_arg.cast<const Disk &>(), dst_path, co, p);
        return;
    }
    std::filesystem::path src_path;
    try {
        src_path = src_arg.cast<std::filesystem::path>();
    } catch (const py::cast_error &) {
        throw py::type_error("src: expected a path or a vdkit.Disk");
    }
    if (src_format) co.source_format = *src_format;
    convert_path(lib, src_path, dst_path, std::move(co), p);
}

} // namespace

PYBIND11_MODULE(_vdkit, m) {
    m.doc() = "vdkit virtual-disk library (compiled part; import vdkit instead)";

    m.def(
        "_status_table",
        [] {
            py::list out;
            for (vdkit_status code = 0; code < VDKIT_STATUS_COUNT; ++code)
                out.append(py::make_tuple(code, status_name(code), status_text(code)));
            return out;
        },
        "[(code, 'VDKIT_E_...', text)] for every code vdkit/status.h defines");

    py::class_<CancelToken, std::shared_ptr<CancelToken>>(
        m, "Cancel", "A cancel request for Library.copy/convert; cancel() may be called from any thread.")
        .def(py::init<>())
        .def(
            "cancel", [](CancelToken &t) { t.requested.store(true); }, "Ask the operation to stop (CancelledError).")
        .def_property_readonly("cancelled", [](const CancelToken &t) { return t.requested.load(); });

    py::class_<ImageInfo>(m, "ImageInfo", "One image of an open chain (Disk.info()).")
        .def_readonly("location", &ImageInfo::location)
        .def_readonly("format", &ImageInfo::format)
        .def_readonly("subformat", &ImageInfo::subformat)
        .def_readonly("virtual_size", &ImageInfo::virtual_size, "bytes")
        .def_readonly("file_size", &ImageInfo::file_size, "bytes used on the medium, or None")
        .def_readonly("file_length", &ImageInfo::file_length, "bytes the files are long (holes included), or None")
        .def_readonly("granularity", &ImageInfo::granularity, "bytes of the allocation unit")
        .def_readonly("read_only", &ImageInfo::read_only)
        .def_readonly("has_parent", &ImageInfo::has_parent)
        .def_readonly("fixed", &ImageInfo::fixed)
        .def_readonly("zero_init", &ImageInfo::zero_init)
        .def_readonly("sequential", &ImageInfo::sequential)
        .def_property_readonly("uuid", [](const ImageInfo &i) { return uuid_object(i.uuid); })
        .def_property_readonly("modification_uuid", [](const ImageInfo &i) { return uuid_object(i.modification_uuid); })
        .def_property_readonly("parent_uuid", [](const ImageInfo &i) { return uuid_object(i.parent_uuid); })
        .def_property_readonly("parent_modification_uuid",
                               [](const ImageInfo &i) { return uuid_object(i.parent_modification_uuid); })
        .def_property_readonly(
            "parent",
            [](const ImageInfo &i) -> std::optional<std::string> {
                if (!i.has_parent) return std::nullopt;
                return i.parent_hint;
            },
            "the parent location the image records, or None")
        .def_property_readonly(
            "pchs", [](const ImageInfo &i) { return geometry_tuple(i.pchs); }, "(cylinders, heads, sectors)")
        .def_property_readonly(
            "lchs", [](const ImageInfo &i) { return geometry_tuple(i.lchs); }, "(cylinders, heads, sectors)")
        .def_readonly("comment", &ImageInfo::comment)
        .def_readonly("filters", &ImageInfo::filters)
        .def("__repr__", [](const ImageInfo &i) {
            return "<vdkit.ImageInfo " + i.location + " format=" + i.format +
                   (i.subformat.empty() ? "" : "/" + i.subformat) + " size=" + std::to_string(i.virtual_size) + ">";
        });

    py::class_<BlockRuns>(m, "BlockRuns", "Iterator of (offset, length, BlockState) runs.")
        .def(
            "__iter__", [](BlockRuns &r) -> BlockRuns & { return r; }, py::return_value_policy::reference_internal)
        .def("__next__", &BlockRuns::next);

    py::class_<Disk>(m, "Disk", "An open disk: a chain of images read and written as one (Library.open/create).")
        .def_property_readonly("size", &Disk::size, "virtual size in bytes")
        .def_property_readonly("writable", &Disk::writable)
        .def_property_readonly("image_count", &Disk::image_count, "images in the chain (base is 0)")
        .def(
            "read",
            [](const Disk &d, uint64_t offset, uint64_t length) {
                check_range(d, offset, length);
                py::bytes out(nullptr, static_cast<size_t>(length));
                char *buf = PyBytes_AS_STRING(out.ptr());
                check(without_gil([&] { return d.read(offset, buf, length); }));
                return out;
            },
            py::arg("offset"), py::arg("length"), "Read length bytes at offset; returns bytes.")
        .def(
            "readinto",
            [](const Disk &d, uint64_t offset, py::object buffer) {
                BufferView view(buffer, true);
                check_range(d, offset, view.size());
                check(without_gil([&] { return d.read(offset, view.data(), view.size()); }));
                return view.size();
            },
            py::arg("offset"), py::arg("buffer"), "Fill a writable buffer from offset; returns its length.")
        .def(
            "write",
            [](Disk &d, uint64_t offset, py::object data) {
                BufferView view(data, false);
                check_range(d, offset, view.size());
                check(without_gil([&] { return d.write(offset, view.data(), view.size()); }));
                return view.size();
            },
            py::arg("offset"), py::arg("data"), "Write a bytes-like object at offset; returns its length.")
        .def(
            "write_zeroes",
            [](Disk &d, uint64_t offset, uint64_t length) {
                check(without_gil([&] { return d.write_zeroes(offset, length); }));
            },
            py::arg("offset"), py::arg("length"), "Make the range read as zero.")
        .def(
            "discard",
            [](Disk &d, uint64_t offset, uint64_t length) {
                check(without_gil([&] { return d.discard(offset, length); }));
            },
            py::arg("offset"), py::arg("length"),
            "Give the range back (top image); it then reads as zero or the parent's data.")
        .def("flush", [](Disk &d) { check(without_gil([&] { return d.flush(); })); })
        .def(
            "block_status",
            [](py::object self, uint64_t offset, std::optional<uint64_t> length) {
                Disk &d = self.cast<Disk &>();
                const uint64_t len = length ? *length : (offset < d.size() ? d.size() - offset : 0);
                check_range(d, offset, len);
                return BlockRuns{self, &d, offset, offset + len};
            },
            py::arg("offset") = 0, py::arg("length") = py::none(),
            "Iterate the allocation of [offset, offset+length) (default: to the end) as (offset, length, BlockState).")
        .def(
            "image_info",
            [](const Disk &d, size_t index) {
                if (index >= d.image_count())
                    raise_status(Status(VDKIT_E_OUT_OF_RANGE, "image " + std::to_string(index) + ": the chain has " +
                                                                  std::to_string(d.image_count()) + " images"));
                return take(without_gil([&] { return d.image_info(index); }));
            },
            py::arg("index"), "ImageInfo of image index (0 is the base).")
        .def(
            "info",
            [](const Disk &d) {
                std::vector<ImageInfo> out;
                Status failed;
                {
                    py::gil_scoped_release nogil;
                    for (size_t i = 0; i < d.image_count() && failed; ++i) {
                        Result<ImageInfo> info = d.image_info(i);
                        if (info)
                            out.push_back(std::move(info).value());
                        else
                            failed = info.status();
                    }
                }
                check(failed);
                return out;
            },
            "ImageInfo of every image of the chain, base first.")
        .def(
            "metadata_keys", [](const Disk &d) { return take(without_gil([&] { return d.metadata_keys(); })); },
            "Metadata keys of the top image.")
        .def(
            "metadata_get",
            [](const Disk &d, const std::string &key) {
                return take(without_gil([&] { return d.metadata_get(key); }));
            },
            py::arg("key"), "A metadata value of the top image (NotFoundError when absent).")
        .def(
            "metadata_set",
            [](Disk &d, const std::string &key, const std::string &value) {
                check(without_gil([&] { return d.metadata_set(key, value); }));
            },
            py::arg("key"), py::arg("value"), "Set a metadata value of the top image (writable disks).")
        .def(
            "close", [](Disk &d) { check(without_gil([&] { return d.close(); })); },
            "Flush and close every image; later calls fail with InvalidArgumentError.")
        .def("__enter__", [](py::object self) { return self; })
        .def("__exit__", [](Disk &d, py::object exc_type, py::object, py::object) {
            Status s = without_gil([&] { return d.close(); });
            if (exc_type.is_none()) check(s); // else the exception in flight wins
            return false;
        });

    py::class_<Library, std::shared_ptr<Library>>(
        m, "Library", "Loads the plugins and opens or creates disks; safe to share between threads.")
        .def(py::init([](std::vector<std::filesystem::path> plugin_paths,
                         std::optional<std::filesystem::path> config_file, py::object log,
                         std::optional<std::string> log_level, bool search_environment, bool search_install_dir) {
                 LibraryOptions o;
                 for (const auto &p : plugin_paths)
                     o.plugin_paths.push_back(path_text(p));
                 if (config_file) o.config_file = path_text(*config_file);
                 o.search_environment = search_environment;
                 o.search_install_dir = search_install_dir;
                 o.log_level = parse_level(log_level);
                 if (!log.is_none()) {
                     auto callback = keep(std::move(log));
                     o.log = [callback](LogLevel level, std::string_view message) {
                         py::gil_scoped_acquire gil;
                         try {
                             (*callback)(level_name(level), py::str(message.data(), message.size()));
                         } catch (py::error_already_set &e) {
                             e.discard_as_unraisable("vdkit log callback");
                         }
                     };
                 }
                 return take(without_gil([&] { return Library::create(o); }));
             }),
             py::kw_only(), py::arg("plugin_paths") = std::vector<std::filesystem::path>{},
             py::arg("config_file") = py::none(), py::arg("log") = py::none(), py::arg("log_level") = py::none(),
             py::arg("search_environment") = true, py::arg("search_install_dir") = true)
        .def(
            "formats",
            [](const Library &lib) {
                std::vector<std::string> out;
                for (const PluginInfo &p : lib.plugins())
                    if (p.kind == PluginKind::format) out.push_back(p.name);
                return out;
            },
            "Names of the loaded format plugins.")
        .def(
            "probe",
            [](const Library &lib, const std::filesystem::path &path) {
                return take(without_gil([&] { return lib.probe(path_text(path)); }));
            },
            py::arg("path"), "The format name of the image at path.")
        .def(
            "open",
            [](const Library &lib, const std::filesystem::path &path, std::optional<std::string> format, bool writable,
               std::optional<py::dict> options, std::optional<py::dict> transport_options, bool follow_parents,
               bool writable_chain, bool force_share) {
                OpenOptions o;
                if (format) o.format = *format;
                o.writable = writable;
                o.format_options = to_options(options);
                o.transport_options = to_options(transport_options);
                o.follow_parents = follow_parents;
                o.writable_chain = writable_chain;
                o.force_share = force_share;
                return open_disk(lib, path_text(path), o);
            },
            py::arg("path"), py::arg("format") = py::none(), py::arg("writable") = false, py::kw_only(),
            py::arg("options") = py::none(), py::arg("transport_options") = py::none(),
            py::arg("follow_parents") = true, py::arg("writable_chain") = false, py::arg("force_share") = false,
            "Open an image and the chain below it (format None: probe).")
        .def(
            "create",
            [](const Library &lib, const std::filesystem::path &path, const std::string &format, uint64_t size,
               std::optional<py::dict> options, std::optional<std::filesystem::path> parent,
               std::optional<std::string> parent_format, bool fixed, std::optional<py::dict> transport_options) {
                CreateOptions o;
                o.format = format;
                o.size = size;
                o.options = to_options(options);
                o.transport_options = to_options(transport_options);
                if (parent) o.parent = path_text(*parent);
                if (parent_format) o.parent_format = *parent_format;
                o.fixed = fixed;
                return take(without_gil([&] { return lib.create_image(path_text(path), o); }));
            },
            py::arg("path"), py::arg("format"), py::arg("size") = 0, py::arg("options") = py::none(), py::kw_only(),
            py::arg("parent") = py::none(), py::arg("parent_format") = py::none(), py::arg("fixed") = false,
            py::arg("transport_options") = py::none(),
            "Create a new image (never replacing a file: ExistsError) and open it for writing. "
            "size in bytes; 0 with a parent: the parent's size.")
        .def(
            "copy",
            [](const Library &lib, const Disk &src, Disk &dst, py::object progress, std::shared_ptr<CancelToken> cancel,
               bool target_is_zero, unsigned threads) {
                CopyOptions copy;
                copy.target_is_zero = target_is_zero;
                copy.threads = threads;
                Progress p(std::move(progress), std::move(cancel));
                check(copy_disks(lib, src, dst, copy, p));
            },
            py::arg("src"), py::arg("dst"), py::kw_only(), py::arg("progress") = py::none(),
            py::arg("cancel") = py::none(), py::arg("target_is_zero") = false, py::arg("threads") = 0,
            "Copy src's content into dst (at least as large). progress(done, total) in bytes; returning False "
            "(or cancel.cancel()) stops it with CancelledError.")
        .def("convert", &convert_to_new_image, py::arg("src"), py::arg("dst"), py::arg("format"), py::kw_only(),
             py::arg("options") = py::none(), py::arg("src_format") = py::none(), py::arg("progress") = py::none(),
             py::arg("cancel") = py::none(), py::arg("threads") = 0, py::arg("overwrite") = false,
             py::arg("verify") = false,
             "Convert src (a path, opened read-only, or an open Disk) into a new image dst of format (with its "
             "create options). A path source runs the library's convert job: dst is built in a hidden staging "
             "directory beside it and gets its name only when complete, never replacing a file (ExistsError) "
             "unless overwrite=True (a regular file only, once the new image is complete). An open Disk source "
             "is copied into a newly created dst (overwrite is refused). verify=True compares dst with src "
             "before it is kept (CorruptError on a difference). On failure, cancel or Ctrl-C nothing is left "
             "behind. progress and cancel as for copy.");
}
