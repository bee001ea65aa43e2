// Parent and extent paths named inside an image must not escape its directory.
#include "test_support.hpp"

#include "io/paths.hpp"

#include <fstream>

using namespace vdkit;

namespace {
void set_hint(const std::string &image, const std::string &hint) {
    std::fstream f(image, std::ios::in | std::ios::out | std::ios::binary);
    unsigned char len[2] = {static_cast<unsigned char>(hint.size()), 0};
    f.seekp(80);
    f.write(reinterpret_cast<const char *>(len), 2);
    f.write(hint.data(), static_cast<std::streamsize>(hint.size()));
}
} // namespace

TEST_CASE("a parent hint leaving the image's directory is refused unless allowed", "[paths]") {
    test::TempDir dir;
    std::filesystem::create_directory(dir / "vm");
    auto lib = test::make_library();
    REQUIRE_OK(lib->create_image(dir / "outside.toys", test::create_opts("toysparse", 1 << 20)));
    REQUIRE_OK(lib->create_image(dir / "vm/inside.toys", test::create_opts("toysparse", 1 << 20)));
    CreateOptions co = test::create_opts("toysparse");
    co.parent = dir / "vm/inside.toys";
    REQUIRE_OK(lib->create_image(dir / "vm/child.toys", co));
    OpenOptions lenient;
    lenient.ignore_parent_mismatch = true;

    for (std::string hint : {std::string("../outside.toys"), dir / "outside.toys",
                             std::string("sub/../../outside.toys"), std::string("http://example.invalid/x.toys")}) {
        INFO(hint);
        set_hint(dir / "vm/child.toys", hint);
        auto r = lib->open(dir / "vm/child.toys", lenient);
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == VDKIT_E_PERMISSION);
        CHECK_THAT(r.status().message(), Catch::Contains("allow_unsafe_paths"));
    }
    set_hint(dir / "vm/child.toys", "../outside.toys");
    OpenOptions allowed = lenient;
    allowed.allow_unsafe_paths = true;
    REQUIRE_OK(lib->open(dir / "vm/child.toys", allowed));
}

TEST_CASE("a symlink inside the directory that leads out is refused", "[paths]") {
    test::TempDir dir;
    std::filesystem::create_directory(dir / "vm");
    auto lib = test::make_library();
    REQUIRE_OK(lib->create_image(dir / "outside.toys", test::create_opts("toysparse", 1 << 20)));
    std::filesystem::create_symlink(dir / "outside.toys", dir / "vm/link.toys");
    REQUIRE_OK(lib->create_image(dir / "vm/p.toys", test::create_opts("toysparse", 1 << 20)));
    CreateOptions co = test::create_opts("toysparse");
    co.parent = dir / "vm/p.toys";
    REQUIRE_OK(lib->create_image(dir / "vm/child.toys", co));
    set_hint(dir / "vm/child.toys", "link.toys");
    OpenOptions lenient;
    lenient.ignore_parent_mismatch = true;
    auto r = lib->open(dir / "vm/child.toys", lenient);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == VDKIT_E_PERMISSION);
    CHECK_THAT(r.status().message(), Catch::Contains("symbolic link"));
}

TEST_CASE("a parent one directory up is followed only when it is the recorded image", "[paths]") {
    // The path rule (docs/design/paths.md): a/base under b/child's parent
    // directory is the image b/child records (its UUID), so the link is
    // written and followed with no configuration; an impostor with another
    // UUID at that place is refused, ignore_parent_mismatch or not.
    test::TempDir dir;
    std::filesystem::create_directory(dir / "a");
    std::filesystem::create_directory(dir / "b");
    auto lib = test::make_library();
    REQUIRE_OK(lib->create_image(dir / "a/base.toys", test::create_opts("toysparse", 1 << 20)));
    CreateOptions co = test::create_opts("toysparse");
    co.parent = dir / "a/base.toys";
    REQUIRE_OK(lib->create_image(dir / "b/child.toys", co));
    REQUIRE_OK(lib->open(dir / "b/child.toys"));
    std::filesystem::rename(dir / "a/base.toys", dir / "a/real.toys");
    REQUIRE_OK(lib->create_image(dir / "a/base.toys", test::create_opts("toysparse", 1 << 20)));
    OpenOptions lenient;
    lenient.ignore_parent_mismatch = true;
    auto r = lib->open(dir / "b/child.toys", lenient);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == VDKIT_E_PERMISSION);
    CHECK_THAT(r.status().message(), Catch::Contains("not the parent"));
}

TEST_CASE("a link the next open would refuse is not written", "[paths]") {
    test::TempDir dir;
    std::filesystem::create_directories(dir / "a/deep");
    std::filesystem::create_directories(dir / "b/c");
    auto lib = test::make_library();
    REQUIRE_OK(lib->create_image(dir / "a/deep/base.toys", test::create_opts("toysparse", 1 << 20)));
    CreateOptions co = test::create_opts("toysparse");
    co.parent = dir / "a/deep/base.toys";
    auto r = lib->create_image(dir / "b/c/child.toys", co); // ../../a/deep/base.toys: two levels up
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == VDKIT_E_PERMISSION);
    CHECK_FALSE(std::filesystem::exists(dir / "b/c/child.toys")); // nothing half-made
    co.allow_unsafe_paths = true;
    REQUIRE_OK(lib->create_image(dir / "b/c/child.toys", co));
}

TEST_CASE("dry-run stores take writes without passing them on", "[paths]") {
    // Disk::can_attach runs the format's set_parent on a dry-run copy: the
    // answer is the real one and the file is unchanged.
    test::TempDir dir;
    auto lib = test::make_library();
    REQUIRE_OK(lib->create_image(dir / "base.toys", test::create_opts("toysparse", 1 << 20)));
    REQUIRE_OK(lib->create_image(dir / "other.toys", test::create_opts("toysparse", 1 << 20)));
    CreateOptions co = test::create_opts("toysparse");
    co.parent = dir / "base.toys";
    REQUIRE_OK(lib->create_image(dir / "child.toys", co));
    auto bytes = [&] {
        std::ifstream f(dir / "child.toys", std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(f), {});
    };
    const std::string before = bytes();
    OpenOptions alone;
    alone.follow_parents = false;
    alone.writable = true;
    auto child = lib->open(dir / "child.toys", alone);
    REQUIRE_OK(child);
    auto other = lib->open(dir / "other.toys");
    REQUIRE_OK(other);
    AttachOptions relink;
    relink.relink = true;
    REQUIRE_OK((*child)->can_attach(**other, relink));
    CHECK(bytes() == before);
    relink.verify_identity = true; // other.toys is not the recorded parent
    auto no = (*child)->can_attach(**other, relink);
    CHECK(no.code() == VDKIT_E_PARENT_MISMATCH);
    CHECK(bytes() == before);
    REQUIRE_OK((*child)->close());
}

TEST_CASE("commit and merge check the links they will write before moving data", "[paths]") {
    // base in a/, mid in a/b/, top in a/b/c/: each link climbs one level
    // (allowed, verified by UUID). Committing top into base, or merging mid
    // away, would give top the link ../../base.toys — two levels, which the
    // next open would refuse: both are refused up front and nothing changes.
    test::TempDir dir;
    std::filesystem::create_directories(dir / "a/b/c");
    auto lib = test::make_library();
    REQUIRE_OK(lib->create_image(dir / "a/base.toys", test::create_opts("toysparse", 1 << 20)));
    CreateOptions co = test::create_opts("toysparse");
    co.parent = dir / "a/base.toys";
    REQUIRE_OK(lib->create_image(dir / "a/b/mid.toys", co));
    co.parent = dir / "a/b/mid.toys";
    REQUIRE_OK(lib->create_image(dir / "a/b/c/top.toys", co));
    OpenOptions rw;
    rw.writable = true;
    rw.writable_chain = true;
    {
        auto d = lib->open(dir / "a/b/c/top.toys", rw);
        REQUIRE_OK(d);
        std::vector<unsigned char> data(4096, 0xab);
        REQUIRE_OK((*d)->write(0, data.data(), data.size()));
        REQUIRE_OK((*d)->close());
    }
    auto bytes = [&](const std::string &f) {
        std::ifstream in(f, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(in), {});
    };
    const std::string base_before = bytes(dir / "a/base.toys"), top_before = bytes(dir / "a/b/c/top.toys");
    auto d = lib->open(dir / "a/b/c/top.toys", rw);
    REQUIRE_OK(d);
    REQUIRE((*d)->image_count() == 3);
    Status committed = (*d)->commit(0, true);
    CHECK(committed.code() == VDKIT_E_PERMISSION);
    Status merged = (*d)->merge(1, 0); // mid into base: top would name ../../base.toys
    CHECK(merged.code() == VDKIT_E_PERMISSION);
    REQUIRE_OK((*d)->close());
    CHECK(bytes(dir / "a/base.toys") == base_before);
    CHECK(bytes(dir / "a/b/c/top.toys") == top_before);
    CHECK(std::filesystem::exists(dir / "a/b/mid.toys"));
    REQUIRE_OK(lib->open(dir / "a/b/c/top.toys"));
}

TEST_CASE("names inside a remote image resolve against its URL under the local rule", "[paths][url]") {
    // core/src/io/paths.cpp resolve_in_url: joined onto the URL's directory,
    // the query dropped, never another scheme or server, and the same zones
    // as local files (extents in the directory or below, parents one up).
    const std::string img = "http://h:8080/store/vm/disk.vmdk?sig=a/b";
    auto ok = [&](std::string_view name, PathUse use) {
        auto r = resolve_named(img, name, use, false);
        REQUIRE(r.is_ok());
        return *r;
    };
    CHECK(ok("disk-s001.vmdk", PathUse::extent).location == "http://h:8080/store/vm/disk-s001.vmdk");
    CHECK(ok("sub/./x.vmdk", PathUse::extent).location == "http://h:8080/store/vm/sub/x.vmdk");
    CHECK(ok("my disk.vmdk", PathUse::extent).location == "http://h:8080/store/vm/my disk.vmdk");
    CHECK_FALSE(ok("disk..vmdk", PathUse::extent).beyond); // dots inside a name are no climb
    CHECK(ok("/store/vm/abs.vmdk", PathUse::extent).location == "http://h:8080/store/vm/abs.vmdk");
    NamedPath up = ok("../base.vmdk", PathUse::parent);
    CHECK(up.location == "http://h:8080/store/base.vmdk");
    CHECK(up.beyond);
    CHECK_FALSE(ok("base.vmdk", PathUse::parent).beyond);
    CHECK(ok("x.vmdk", PathUse::extent).location.find('?') == std::string::npos);
    CHECK(resolve_named("s3://bucket/dir/a.vmdk", "a-s001.vmdk", PathUse::extent, false)->location ==
          "s3://bucket/dir/a-s001.vmdk");
    CHECK(resolve_named("http://h", "x.vmdk", PathUse::extent, false)->location == "http://h/x.vmdk");

    for (auto [name, use] : {std::pair<std::string, PathUse>{"../x-flat.vmdk", PathUse::extent},
                             {"/etc/passwd", PathUse::extent},
                             {"sub/../../x.vmdk", PathUse::extent},
                             {"../../base.vmdk", PathUse::parent},
                             {"../a/b/base.vmdk", PathUse::parent},
                             {"%2e%2e/x.vmdk", PathUse::extent},
                             {"x.vmdk?y=1", PathUse::extent},
                             {"file:///etc/passwd", PathUse::extent},
                             {"http://evil/x.vmdk", PathUse::parent},
                             {"nbd:localhost:10809", PathUse::parent}}) {
        INFO(name);
        auto r = resolve_named(img, name, use, false);
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == VDKIT_E_PERMISSION);
        CHECK_THAT(r.status().message(), Catch::Contains("allow_unsafe_paths"));
        CHECK_THAT(r.status().message(), Catch::Contains(img));
    }
    // Climbing above the server's root is no way back into it.
    for (const char *name : {"../x.vmdk", "a/../../x.vmdk"}) {
        INFO(name);
        CHECK(resolve_named("http://h/disk.vmdk", name, PathUse::extent, false).status().code() == VDKIT_E_PERMISSION);
    }
    CHECK(resolve_named("http://h/disk.vmdk", "../../x.vmdk", PathUse::parent, false).status().code() ==
          VDKIT_E_PERMISSION);
    // allow_unsafe_paths: still joined onto the image's own server.
    CHECK(resolve_named(img, "../../x", PathUse::extent, true)->location == "http://h:8080/x");
}

TEST_CASE("names inside a URL image join onto its URL, keeping its server and socket query", "[paths]") {
    struct Case {
        const char *image, *name, *want;
    };
    for (const Case &c :
         {Case{"nbd+unix:///disk.vmdk?socket=/tmp/s/sock", "disk-flat.vmdk",
               "nbd+unix:///disk-flat.vmdk?socket=/tmp/s/sock"},
          Case{"nbd://host:10809/vm/disk.vmdk", "disk-s001.vmdk", "nbd://host:10809/vm/disk-s001.vmdk"},
          Case{"nbd://host", "x.vmdk", "nbd://host/x.vmdk"},
          Case{"nbds+unix:///d/disk.vmdk?socket=/s#f", "disk-s001.vmdk", "nbds+unix:///d/disk-s001.vmdk?socket=/s"}}) {
        INFO(c.image << " + " << c.name);
        auto r = resolve_sibling(c.image, c.name, false);
        REQUIRE_OK(r);
        CHECK(*r == c.want);
        // A child names such a sibling back relative to itself.
        CHECK(relative_hint(c.image, c.want) == c.name);
    }
    // Leaving the directory, an absolute path, or a query of its own (which
    // could name another socket or server) is refused unless allowed.
    for (const char *name :
         {"../other.vmdk", "/etc/passwd", "x.vmdk?socket=/run/other", "x.vmdk#frag", "file:///etc/passwd"}) {
        INFO(name);
        auto r = resolve_sibling("nbd+unix:///vm/disk.vmdk?socket=/tmp/s", name, false);
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().code() == VDKIT_E_PERMISSION);
        CHECK_THAT(r.status().message(), Catch::Contains("allow_unsafe_paths"));
    }
}
