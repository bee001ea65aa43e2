// Renaming, moving and deleting images without breaking the chains built
// on them (Library::find_children / rename_image / delete_image and the C
// API) and attaching a chain onto another, over a mixed chain: VDI base, split-sparse VMDK middle, toysparse top.
#include "test_support.hpp"

#include "vdkit/vdkit.h"

#include <algorithm>
#include <sys/stat.h>

using namespace vdkit;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kSize = 8u << 20;

struct Chain {
    std::string base, mid, top;
    std::vector<unsigned char> model;
};

// base.vdi <- mid.vmdk (4 extent files) <- top.toys, each holding its own data.
Chain make_chain(Library &lib, const test::TempDir &dir) {
    Chain c{dir / "base.vdi", dir / "mid.vmdk", dir / "top.toys", std::vector<unsigned char>(kSize, 0)};
    auto put = [&](Disk &d, uint64_t off, uint32_t seed) {
        auto data = test::pattern(1u << 20, seed);
        REQUIRE_OK(d.write(off, data.data(), data.size()));
        std::copy(data.begin(), data.end(), c.model.begin() + static_cast<long>(off));
    };
    auto base = lib.create_image(c.base, test::create_opts("vdi", kSize));
    REQUIRE_OK(base);
    put(**base, 0, 1);
    REQUIRE_OK((*base)->close());
    CreateOptions mo = test::create_opts("vmdk");
    mo.options = {{"subformat", "twoGbMaxExtentSparse"}, {"split-size", "2M"}};
    mo.parent = c.base;
    auto mid = lib.create_image(c.mid, mo);
    REQUIRE_OK(mid);
    put(**mid, 3u << 20, 2);
    REQUIRE_OK((*mid)->close());
    CreateOptions to = test::create_opts("toysparse");
    to.parent = c.mid;
    auto top = lib.create_image(c.top, to);
    REQUIRE_OK(top);
    put(**top, 6u << 20, 3);
    REQUIRE_OK((*top)->close());
    return c;
}

std::string content_of(Library &lib, const std::string &top, const std::vector<unsigned char> &model,
                       bool unsafe = false) {
    OpenOptions o;
    if (unsafe) o.allow_unsafe_paths = true;
    auto d = lib.open(top, o);
    if (!d) return d.status().to_string();
    return test::first_difference(**d, model);
}

std::vector<std::string> names(const fs::path &dir) {
    std::vector<std::string> out;
    for (const auto &e : fs::directory_iterator(dir))
        out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

} // namespace

TEST_CASE("children are found by parent path and UUID", "[manage]") {
    test::TempDir dir;
    auto lib = test::make_library();
    Chain c = make_chain(*lib, dir);
    // Noise that must not count: a raw file and a base image.
    REQUIRE_OK(lib->create_image(dir / "other.vdi", test::create_opts("vdi", kSize)));
    std::ofstream(dir / "notes.txt") << "not an image";
    auto kids = lib->find_children(c.base);
    REQUIRE_OK(kids);
    CHECK(*kids == std::vector<std::string>{c.mid});
    kids = lib->find_children(c.mid);
    REQUIRE_OK(kids);
    CHECK(*kids == std::vector<std::string>{c.top});
    kids = lib->find_children(c.top);
    REQUIRE_OK(kids);
    CHECK(kids->empty());

    // A child made over an image that was later replaced names the same
    // path but another UUID: it is not the new image's child.
    CreateOptions co = test::create_opts("vdi");
    co.parent = dir / "other.vdi";
    REQUIRE_OK(lib->create_image(dir / "stale.vdi", co));
    CreateOptions again = test::create_opts("vdi", kSize);
    again.overwrite = true;
    REQUIRE_OK(lib->create_image(dir / "other.vdi", again));
    kids = lib->find_children(dir / "other.vdi");
    REQUIRE_OK(kids);
    CHECK(kids->empty());
}

TEST_CASE("an image's disk size counts every file it holds open", "[manage]") {
    test::TempDir dir;
    auto lib = test::make_library();
    Chain c = make_chain(*lib, dir);
    // mid.vmdk is a descriptor and four extent files: its disk size is what
    // all five use, as `du` counts them.
    uint64_t expected = 0;
    int files = 0;
    for (const auto &name : names(dir.path()))
        if (name.rfind("mid", 0) == 0) {
            struct stat st {};
            REQUIRE(::stat((dir / name).c_str(), &st) == 0);
            expected += static_cast<uint64_t>(st.st_blocks) * 512u;
            ++files;
        }
    REQUIRE(files == 5);
    auto d = lib->open(c.mid);
    REQUIRE_OK(d);
    auto info = (*d)->image_info(1);
    REQUIRE_OK(info);
    REQUIRE(info->file_size.has_value());
    CHECK(*info->file_size == expected);
    // The descriptor alone is one file system block: the extents are counted.
    struct stat desc {};
    REQUIRE(::stat(c.mid.c_str(), &desc) == 0);
    CHECK(*info->file_size > static_cast<uint64_t>(desc.st_blocks) * 512u);
}

TEST_CASE("rename moves every file and relinks parent and children", "[manage]") {
    test::TempDir dir;
    auto lib = test::make_library();
    Chain c = make_chain(*lib, dir);

    SECTION("a split VMDK in the middle of the chain, in its directory") {
        auto r = lib->rename_image(c.mid, dir / "renamed.vmdk");
        REQUIRE_OK(r);
        CHECK(r->location == dir / "renamed.vmdk");
        CHECK(r->relinked == std::vector<std::string>{c.top});
        CHECK(names(dir.path()) == std::vector<std::string>{"base.vdi", "renamed-s001.vmdk", "renamed-s002.vmdk",
                                                            "renamed-s003.vmdk", "renamed-s004.vmdk", "renamed.vmdk",
                                                            "top.toys"});
        CHECK(content_of(*lib, c.top, c.model) == "equal");
        auto d = lib->open(c.top);
        REQUIRE_OK(d);
        CHECK((*d)->image_info(1)->location == dir / "renamed.vmdk");
    }
    SECTION("the base into a subdirectory: its child's new path stays inside the child's directory") {
        fs::create_directory(dir.path() / "elsewhere");
        auto r = lib->rename_image(c.base, dir / "elsewhere/base.vdi");
        REQUIRE_OK(r);
        CHECK(r->relinked == std::vector<std::string>{c.mid});
        CHECK(!fs::exists(c.base));
        CHECK(content_of(*lib, c.top, c.model) == "equal");
    }
    SECTION("a split VMDK to another file system: copied with its holes, then the originals removed") {
        const std::string elsewhere = test::other_file_system(dir);
        if (elsewhere.empty()) {
            VDKIT_SKIP("/dev/shm is missing or on the test directory's file system; no EXDEV move to test");
        }
        test::TempDir other(elsewhere);
        const std::string to = other / "mid.vmdk";
        RenameOptions ro;
        ro.allow_unsafe_paths = true; // the moved image names a parent, its child names it, across directories
        auto r = lib->rename_image(c.mid, to, ro);
        REQUIRE_OK(r);
        CHECK(r->relinked == std::vector<std::string>{c.top});
        CHECK(names(other.path()) ==
              std::vector<std::string>{"mid-s001.vmdk", "mid-s002.vmdk", "mid-s003.vmdk", "mid-s004.vmdk", "mid.vmdk"});
        CHECK(names(dir.path()) == std::vector<std::string>{"base.vdi", "top.toys"});
        CHECK(content_of(*lib, c.top, c.model, true) == "equal");
        // Holes stayed holes: four 2 MiB extents hold 1 MiB of data and their tables.
        uint64_t used = 0;
        for (const auto &e : fs::directory_iterator(other.path())) {
            struct stat st {};
            REQUIRE(::stat(e.path().c_str(), &st) == 0);
            used += static_cast<uint64_t>(st.st_blocks) * 512;
        }
        CHECK(used < (3u << 20));
    }
    SECTION("the top into a subdirectory: its parent one level up is verified by UUID; two levels need unsafe paths") {
        // The path rule (docs/design/paths.md): ../mid.vmdk is followed
        // because mid is the image top records; ../../mid.vmdk is too far.
        fs::create_directories(dir.path() / "sub/deeper");
        const std::string deep = dir / "sub/deeper/top.toys";
        auto refused = lib->rename_image(c.top, deep);
        CHECK(refused.status().code() == VDKIT_E_PERMISSION);
        CHECK(refused.status().message().find("its parent") != std::string::npos);
        CHECK(fs::exists(c.top));
        CHECK(!fs::exists(deep));
        CHECK(content_of(*lib, c.top, c.model) == "equal");

        const std::string to = dir / "sub/top.toys";
        auto r = lib->rename_image(c.top, to);
        REQUIRE_OK(r);
        CHECK(r->relinked.empty());
        CHECK(!fs::exists(c.top));
        CHECK(content_of(*lib, to, c.model) == "equal");

        RenameOptions ro;
        ro.allow_unsafe_paths = true;
        REQUIRE_OK(lib->rename_image(to, deep, ro));
        CHECK(content_of(*lib, deep, c.model, true) == "equal");
    }
    SECTION("the base to a sibling directory: its child's new path (../other/base.vdi) is verified by UUID") {
        test::TempDir other;
        const std::string to = other / "base.vdi";
        auto r = lib->rename_image(c.base, to);
        REQUIRE_OK(r);
        CHECK(r->relinked == std::vector<std::string>{c.mid});
        CHECK(!fs::exists(c.base));
        CHECK(content_of(*lib, c.top, c.model) == "equal");
    }
    SECTION("children left alone on request") {
        RenameOptions ro;
        ro.relink_children = false;
        REQUIRE_OK(lib->rename_image(c.mid, dir / "renamed.vmdk", ro));
        CHECK(content_of(*lib, c.top, c.model).find("NOT_FOUND") != std::string::npos);
    }
    SECTION("an existing target or an image in use is refused, nothing moves") {
        CHECK(lib->rename_image(c.mid, c.base).status().code() == VDKIT_E_EXISTS);
        // A file that happens to carry an extent's new name is not replaced:
        // the rename stops and what moved is moved back.
        std::ofstream(dir / "renamed-s003.vmdk") << "keep me";
        auto clash = lib->rename_image(c.mid, dir / "renamed.vmdk");
        CHECK(clash.status().code() == VDKIT_E_EXISTS);
        CHECK(test::file_bytes(dir / "renamed-s003.vmdk") == "keep me");
        CHECK(!fs::exists(dir / "renamed-s001.vmdk"));
        CHECK(fs::exists(dir / "mid-s001.vmdk"));
        CHECK(content_of(*lib, c.top, c.model) == "equal");
        fs::remove(dir / "renamed-s003.vmdk");
        OpenOptions w;
        w.writable = true;
        auto busy = lib->open(c.top, w);
        REQUIRE_OK(busy);
        CHECK(lib->rename_image(c.top, dir / "t2.toys").status().code() == VDKIT_E_BUSY);
        REQUIRE_OK((*busy)->close());
        CHECK(names(dir.path()).size() == 7);
        CHECK(content_of(*lib, c.top, c.model) == "equal");
    }
}

TEST_CASE("delete refuses to orphan children unless forced", "[manage]") {
    test::TempDir dir;
    test::LogCapture log;
    auto lib = test::make_library({}, &log);
    Chain c = make_chain(*lib, dir);

    auto refused = lib->delete_image(c.mid);
    CHECK(refused.status().code() == VDKIT_E_PERMISSION);
    CHECK(refused.status().message().find(c.top) != std::string::npos);
    CHECK(fs::exists(c.mid));
    CHECK(content_of(*lib, c.top, c.model) == "equal");

    // The top has no children: it goes, the rest of the chain stays.
    auto gone = lib->delete_image(c.top);
    REQUIRE_OK(gone);
    CHECK(gone->orphaned.empty());
    CHECK(!fs::exists(c.top));
    std::vector<unsigned char> below = c.model;
    std::fill(below.begin() + (6u << 20), below.begin() + (7u << 20), 0); // what the top held
    CHECK(content_of(*lib, c.mid, below) == "equal");
    // Forced: the VMDK and all its extent files go; its child is reported.
    DeleteOptions force;
    force.force = true;
    auto forced = lib->delete_image(c.base, force);
    REQUIRE_OK(forced);
    CHECK(forced->orphaned == std::vector<std::string>{c.mid});
    CHECK(std::any_of(log.lines.begin(), log.lines.end(),
                      [&](const std::string &l) { return l.find("lost its parent") != std::string::npos; }));
    REQUIRE_OK(lib->delete_image(c.mid, force));
    CHECK(names(dir.path()).empty());
}

TEST_CASE("delete looks for children in the places it names, and only there", "[manage]") {
    // vm/base.vdi, vm/Snapshots/s1.vdi over it, vm/current.vdi over s1 (in
    // s1's parent's directory), far/kid.vdi over s1 (found only when named).
    test::TempDir dir;
    fs::create_directories(dir.path() / "vm/Snapshots");
    fs::create_directories(dir.path() / "far");
    auto lib = test::make_library();
    const std::string base = dir / "vm/base.vdi", s1 = dir / "vm/Snapshots/s1.vdi", current = dir / "vm/current.vdi",
                      kid = dir / "far/kid.vdi";
    REQUIRE_OK(lib->create_image(base, test::create_opts("vdi", 4 << 20)));
    CreateOptions over = test::create_opts("vdi");
    over.parent = base;
    REQUIRE_OK(lib->create_image(s1, over)); // ../base.vdi: verified by UUID, no configuration
    over.parent = s1;
    REQUIRE_OK(lib->create_image(current, over));

    // The base: its child is in Snapshots/.
    auto refused = lib->delete_image(base);
    CHECK(refused.status().code() == VDKIT_E_PERMISSION);
    CHECK(refused.status().message().find(s1) != std::string::npos);
    CHECK(refused.status().message().find(dir / "vm/Snapshots") != std::string::npos); // named as searched
    // s1: its child is in the directory of its parent (a chain member's).
    refused = lib->delete_image(s1);
    CHECK(refused.status().code() == VDKIT_E_PERMISSION);
    CHECK(refused.status().message().find(current) != std::string::npos);
    REQUIRE_OK(lib->delete_image(current));

    // far/ is outside the set the path rule lets a child of s1 lie in
    // (../vm/Snapshots/s1.vdi goes two directories down from the one above):
    // such a link is refused when written ...
    over.parent = s1;
    auto unsafe = lib->create_image(kid, over);
    CHECK(unsafe.status().code() == VDKIT_E_PERMISSION);
    CHECK(!fs::exists(kid));
    // ... and opens only with allow_unsafe_paths; a child nobody could open
    // without it is not searched for, but a named directory is.
    over.allow_unsafe_paths = true;
    REQUIRE_OK(lib->create_image(kid, over));
    DeleteOptions named;
    named.search_dirs = {dir / "far"};
    refused = lib->delete_image(s1, named);
    CHECK(refused.status().code() == VDKIT_E_PERMISSION);
    CHECK(refused.status().message().find(kid) != std::string::npos);
    CHECK(fs::exists(s1));
    auto gone = lib->delete_image(s1);
    REQUIRE_OK(gone);
    CHECK(std::find(gone->searched.begin(), gone->searched.end(), dir / "far") == gone->searched.end());
    CHECK(std::find(gone->searched.begin(), gone->searched.end(), dir / "vm") != gone->searched.end());
}

TEST_CASE("delete and rename search every directory a child could name the image from", "[manage][paths]") {
    // base at t/vm/images/base.vdi; the path rule lets a child name it from
    // t/vm/images (and any directory directly in it), t/vm (and any directory
    // directly in it: a sibling), and t, /tmp... further up. Each is found.
    for (const char *place : {"vm/images/c.vdi", "vm/images/Snapshots/c.vdi", "vm/c.vdi", "vm/sib/c.vdi", "c.vdi"}) {
        test::TempDir dir;
        fs::create_directories(dir.path() / "vm/images");
        fs::create_directories((dir.path() / place).parent_path());
        auto lib = test::make_library();
        const std::string base = dir / "vm/images/base.vdi", kid = dir / place;
        REQUIRE_OK(lib->create_image(base, test::create_opts("vdi", 1 << 20)));
        CreateOptions over = test::create_opts("vdi");
        over.parent = base;
        REQUIRE_OK(lib->create_image(kid, over));
        INFO(place);
        auto refused = lib->delete_image(base);
        CHECK(refused.status().code() == VDKIT_E_PERMISSION);
        CHECK(refused.status().message().find(kid) != std::string::npos);
        auto moved = lib->rename_image(base, dir / "vm/images/moved.vdi");
        REQUIRE_OK(moved);
        CHECK(moved->relinked == std::vector<std::string>{kid});
        CHECK(std::find(moved->searched.begin(), moved->searched.end(), dir / "vm/images") != moved->searched.end());
        OpenOptions oo;
        CHECK(lib->open(kid, oo).is_ok());
    }
}

TEST_CASE("the C API renames, deletes and attaches images", "[manage][c-api]") {
    test::TempDir dir;
    auto cpp = test::make_library();
    Chain c = make_chain(*cpp, dir);
    vdkit_error err{};
    vdkit_library *lib = test::open_c_library(err, true);
    const std::string to = dir / "middle.vmdk";
    CHECK(vdkit_image_rename(lib, c.mid.c_str(), to.c_str(), 0, &err) == VDKIT_OK);
    CHECK(content_of(*cpp, c.top, c.model) == "equal");
    CHECK(vdkit_image_delete(lib, to.c_str(), 0, &err) == VDKIT_E_PERMISSION);
    CHECK(std::string(err.message).find("top.toys") != std::string::npos);
    CHECK(vdkit_image_delete(lib, c.top.c_str(), 0, &err) == VDKIT_OK);
    CHECK(!fs::exists(c.top));
    CHECK(vdkit_image_rename(lib, nullptr, to.c_str(), 0, &err) == VDKIT_E_INVALID_ARGUMENT);

    // Attach: the middle opened alone goes onto the base.
    vdkit_disk *parent = nullptr, *child = nullptr;
    REQUIRE(vdkit_disk_open(lib, c.base.c_str(), nullptr, 0, nullptr, &parent, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_open(lib, to.c_str(), nullptr, VDKIT_DISK_NO_PARENTS, nullptr, &child, &err) == VDKIT_OK);
    CHECK(vdkit_disk_is_attach_possible(parent, child, VDKIT_ATTACH_RELINK, &err) == VDKIT_E_READ_ONLY);
    REQUIRE(vdkit_disk_is_attach_possible(parent, child, 0, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_attach(parent, child, 0, &err) == VDKIT_OK);
    std::vector<unsigned char> all(kSize);
    REQUIRE(vdkit_disk_read(child, 0, all.data(), all.size(), &err) == VDKIT_OK);
    std::vector<unsigned char> want = c.model;
    std::fill(want.begin() + (6u << 20), want.begin() + (7u << 20), 0); // the deleted top's data
    CHECK(all == want);
    CHECK(vdkit_disk_read(parent, 0, all.data(), 1, &err) == VDKIT_E_INVALID_ARGUMENT);
    REQUIRE(vdkit_disk_close(parent, &err) == VDKIT_OK);
    REQUIRE(vdkit_disk_close(child, &err) == VDKIT_OK);
    vdkit_library_close(lib);
}

TEST_CASE("attach puts a differencing image opened alone onto its parent chain", "[manage][attach]") {
    test::TempDir dir;
    auto lib = test::make_library();
    Chain c = make_chain(*lib, dir);
    OpenOptions alone;
    alone.follow_parents = false;
    auto parent = lib->open(c.mid); // base <- mid
    REQUIRE_OK(parent);
    auto child = lib->open(c.top, alone);
    REQUIRE_OK(child);
    CHECK((*child)->image_count() == 1);

    SECTION("into one chain, in memory; the parent handle is consumed") {
        REQUIRE_OK((*child)->can_attach(**parent));
        REQUIRE_OK((*child)->attach(**parent));
        CHECK((*child)->image_count() == 3);
        CHECK(test::first_difference(**child, c.model) == "equal");
        std::vector<unsigned char> b(16);
        CHECK((*parent)->read(0, b.data(), b.size()).code() == VDKIT_E_INVALID_ARGUMENT);
        CHECK((*child)->can_attach(**parent).code() == VDKIT_E_INVALID_ARGUMENT);
    }
    SECTION("refused: a chain that ends in a base, the wrong parent, a larger parent, a loop") {
        auto whole = lib->open(c.top);
        REQUIRE_OK(whole);
        auto other = lib->create_image(dir / "other.vdi", test::create_opts("vdi", kSize));
        REQUIRE_OK(other);
        CHECK((*whole)->can_attach(**other).message().find("is a base image") != std::string::npos);
        CHECK((*child)->can_attach(**other).code() == VDKIT_E_PARENT_MISMATCH);
        auto big = lib->create_image(dir / "big.vdi", test::create_opts("vdi", 2 * kSize));
        REQUIRE_OK(big);
        CHECK((*child)->can_attach(**big).message().find("is larger than") != std::string::npos);
        auto mine = lib->open(c.top);
        REQUIRE_OK(mine);
        CHECK((*child)->can_attach(**mine).message().find("in both chains") != std::string::npos);
        AttachOptions relink;
        relink.relink = true;
        CHECK((*child)->attach(**other).code() == VDKIT_E_PARENT_MISMATCH);
        CHECK((*child)->image_count() == 1);                                      // nothing changed
        CHECK((*child)->can_attach(**other, relink).code() == VDKIT_E_READ_ONLY); // relink writes the child
    }
    SECTION("relinked: the link is recorded, also over another parent") {
        REQUIRE_OK((*child)->close());
        OpenOptions w = alone;
        w.writable = true;
        auto writable = lib->open(c.top, w);
        REQUIRE_OK(writable);
        auto other = lib->create_image(dir / "other.vdi", test::create_opts("vdi", kSize));
        REQUIRE_OK(other);
        AttachOptions relink;
        relink.relink = true;
        REQUIRE_OK((*writable)->attach(**other, relink));
        REQUIRE_OK((*writable)->close());
        auto reopened = lib->open(c.top);
        REQUIRE_OK(reopened);
        CHECK((*reopened)->image_count() == 2);
        CHECK((*reopened)->image_info(0)->location == dir / "other.vdi");
    }
}
