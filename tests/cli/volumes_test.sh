#!/usr/bin/env bash
# vdkit volumes, mount and umount (docs/cli.md) on generated disks: an MBR
# with logical partitions (ext4, swap, ext4, FAT32), a GPT (XFS, NTFS, ext4
# with a name), a 4Kn GPT (ext4, FAT), a filesystem without a table, and an
# LVM PV in a partition holding two linear LVs (ext4, FAT) — each stored raw,
# as VMDK, as VDI and as a VMDK child over a VMDK base.
#   - volumes --output=json lists what sfdisk --json, blkid -p and lvs say
#     about the raw original (volumes_check.py), for every storage;
#   - every filesystem mounted read-only shows the files written into it
#     (sha256); a read-only mount refuses writes;
#   - a read-write mount of the chain's child changes only the child
#     (qemu-img compare of the base before/after) and the data is there on
#     the next mount;
#   - mounting twice, swap, extended, an LVM PV, a busy umount give their
#     errors and exit codes; umount --force detaches a busy mount;
#   - damaged tables (GPT header/array CRC, both GPT headers, overlapping
#     partitions, a logical chain loop, a partition past the end; several
#     generated variants each) give findings and exit 3, never a hang.
# Needs root and loop devices (mkfs and mount through losetup): without
# them the test says why and is skipped (exit 77; in CI it fails).
set -uo pipefail
. "$VDKIT_SOURCE_DIR/tests/support/script_lib.sh"
require_tools qemu-img sfdisk sgdisk blkid mkfs.ext4 mkfs.xfs mkfs.vfat mkfs.ntfs mkswap pvcreate losetup mcopy fusefat python3
export VDKIT_PLUGIN_PATH="$VDKIT_TEST_EXTRA_PLUGIN_DIR"
require_root_loop
vdkit=$VDKIT_BUILD_DIR/bin/vdkit
check=$VDKIT_SOURCE_DIR/tests/cli/volumes_check.py
MiB=$((1 << 20))

mounted=()
at_exit 'for d in "${mounted[@]}"; do "$vdkit" -q umount --force "$d" > /dev/null 2>&1; done'

# part IMG START_BYTES SIZE_BYTES CMD...: run CMD on a loop device over that range.
part() {
    local img=$1 start=$2 size=$3 l
    shift 3
    l=$(losetup --find --show --offset "$start" --sizelimit "$size" "$img") || return 1
    "$@" "$l" > /dev/null 2>&1
    local rc=$?
    losetup -d "$l"
    return $rc
}
# fill IMG START SIZE TAG: write two files into the filesystem in that range
# (mounted through a loop device; FAT with mtools, as this kernel may have no
# vfat driver), record their sums in sums.TAG.
fill() {
    local img=$1 start=$2 size=$3 tag=$4
    random_bytes 300K > "a.$tag"
    random_bytes 70K > "b.$tag"
    if [ "$(blkid -p -o value -s TYPE -O "$start" -S "$size" "$img")" = vfat ]; then
        MTOOLS_SKIP_CHECK=1 mcopy -i "$img@@$start" "a.$tag" ::/a.bin && MTOOLS_SKIP_CHECK=1 mmd -i "$img@@$start" ::/dir &&
            MTOOLS_SKIP_CHECK=1 mcopy -i "$img@@$start" "b.$tag" ::/dir/b.bin || bad "mtools into $tag"
    else
        mkdir -p "m.$tag"
        mount -o loop,offset="$start",sizelimit="$size" "$img" "m.$tag" || { bad "mount $tag to fill it"; return; }
        cp "a.$tag" "m.$tag/a.bin" && mkdir -p "m.$tag/dir" && cp "b.$tag" "m.$tag/dir/b.bin"
        umount "m.$tag"
    fi
    (cp "a.$tag" a.bin && mkdir -p dir && cp "b.$tag" dir/b.bin && sha256sum a.bin dir/b.bin) > "sums.$tag"
}

# ---- the disks --------------------------------------------------------------
truncate -s 80M mbr.raw
sfdisk -q mbr.raw <<'EOF' || bad "sfdisk mbr"
label: dos
start=2048, size=16M, type=83
start=34816, size=8M, type=82
start=51200, type=5
start=53248, size=10M, type=83
start=75776, size=40M, type=c
EOF
part mbr.raw $((2048 * 512)) $((16 * MiB)) mkfs.ext4 -q -L rootfs && fill mbr.raw $((2048 * 512)) $((16 * MiB)) mbr1
part mbr.raw $((34816 * 512)) $((8 * MiB)) mkswap -L sw
part mbr.raw $((53248 * 512)) $((10 * MiB)) mkfs.ext4 -q -L logi5 && fill mbr.raw $((53248 * 512)) $((10 * MiB)) mbr5
part mbr.raw $((75776 * 512)) $((40 * MiB)) mkfs.vfat -F 32 -n FATSIX && fill mbr.raw $((75776 * 512)) $((40 * MiB)) mbr6

truncate -s 400M gpt.raw
sfdisk -q gpt.raw <<'EOF' || bad "sfdisk gpt"
label: gpt
start=2048, size=320M, type=linux, name="xfs data"
size=16M, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=win
size=16M, type=linux, name="home part"
EOF
gstart() { sfdisk --json gpt.raw | python3 -c "import json,sys; p=json.load(sys.stdin)['partitiontable']['partitions'][$1]; print(p['start']*512, p['size']*512)"; }
read -r s n < <(gstart 0); part gpt.raw "$s" "$n" mkfs.xfs -q -L xfsdata && fill gpt.raw "$s" "$n" gpt1
read -r s n < <(gstart 1); part gpt.raw "$s" "$n" mkfs.ntfs -Q -F -L NTFSVOL && fill gpt.raw "$s" "$n" gpt2
read -r s n < <(gstart 2); part gpt.raw "$s" "$n" mkfs.ext4 -q -L home && fill gpt.raw "$s" "$n" gpt3

# 4Kn: a GPT written by sgdisk on a loop device of 4096-byte logical
# sectors; the filesystems made on 4096-byte loop devices; sfdisk reads the
# table through that device for the oracle.
truncate -s 64M 4kn.raw
k4dev=$(losetup --find --show --sector-size 4096 4kn.raw)
sgdisk -n 1:256:+24M -t 1:8300 -c 1:k4root -n 2:0:+16M -t 2:0700 "$k4dev" > /dev/null || bad "sgdisk 4kn"
k4() { sfdisk --json "$k4dev" | python3 -c "import json,sys; p=json.load(sys.stdin)['partitiontable']['partitions'][$1]; print(p['start']*4096, p['size']*4096)"; }
mk4k() { local l; l=$(losetup --find --show --sector-size 4096 --offset "$1" --sizelimit "$2" 4kn.raw); shift 2; "$@" "$l" > /dev/null 2>&1; local rc=$?; losetup -d "$l"; return $rc; }
read -r s1 n1 < <(k4 0)
read -r s2 n2 < <(k4 1)
losetup -d "$k4dev" # mount -o loop refuses a loop device overlapping another one
mk4k "$s1" "$n1" mkfs.ext4 -q -L k4ext && fill 4kn.raw "$s1" "$n1" 4kn1
mk4k "$s2" "$n2" mkfs.vfat -n K4FAT && fill 4kn.raw "$s2" "$n2" 4kn2
k4dev=$(losetup --find --show --read-only --sector-size 4096 4kn.raw)
python3 "$check" expect "$k4dev" expect.4kn.json
losetup -d "$k4dev"

# No table: ext4 on the whole disk.
truncate -s 32M nofs.raw
mkfs.ext4 -q -F -L whole nofs.raw && fill nofs.raw 0 $((32 * MiB)) nofs1

# LVM: a PV in partition 1 of an MBR disk, a VG with two linear LVs, made
# without device-mapper (activation=0) and filled through their byte ranges.
vg=vdkitvol$$
truncate -s 64M lvm.raw
printf 'label: dos\nstart=2048, type=8e\n' | sfdisk -q lvm.raw || bad "sfdisk lvm"
lvm_dev=$(losetup --find --show --offset $((2048 * 512)) lvm.raw)
lvmc=(--config "global{activation=0} devices{filter=[\"a|^$lvm_dev\$|\",\"r|.*|\"]}")
pvcreate -q -ff -y "${lvmc[@]}" "$lvm_dev" > lvm.log 2>&1 && vgcreate -q "${lvmc[@]}" "$vg" "$lvm_dev" >> lvm.log 2>&1 &&
    lvcreate -q "${lvmc[@]}" -an -Zn -L 12M -n lva "$vg" >> lvm.log 2>&1 &&
    lvcreate -q "${lvmc[@]}" -an -Zn -L 8M -n lvb "$vg" >> lvm.log 2>&1 || bad "lvm tools: $(cat lvm.log)"
lvs "${lvmc[@]}" --units b --noheadings -o lv_name,seg_pe_ranges,vg_extent_size "$vg" 2> /dev/null > lvs.txt
pe_start=$(pvs "${lvmc[@]}" --units b --noheadings -o pe_start "$lvm_dev" 2> /dev/null | tr -d ' B')
# Detached, the VG is gone from the host's view (no device-mapper nodes were made).
losetup -d "$lvm_dev"
lvrange() { awk -v lv="$1" -v pe="$pe_start" '$1 == lv { split($2, r, ":"); split(r[2], x, "-"); e = $3 + 0;
    print 1048576 + pe + x[1] * e, (x[2] - x[1] + 1) * e }' lvs.txt; }
read -r s n < <(lvrange lva); part lvm.raw "$s" "$n" mkfs.ext4 -q -L lvaext && fill lvm.raw "$s" "$n" lvm2
read -r s n < <(lvrange lvb); part lvm.raw "$s" "$n" mkfs.vfat -n LVBFAT && fill lvm.raw "$s" "$n" lvm3

disks="mbr gpt 4kn nofs lvm"
# ---- volumes equals util-linux, for every storage -----------------------------------
for d in $disks; do
    if [ "$d" = lvm ]; then
        python3 "$check" expect lvm.raw expect.lvm.json --lvm "1:lvs.txt:$pe_start:$vg"
    elif [ "$d" = 4kn ]; then
        : # made above, through the 4096-byte loop device
    else
        python3 "$check" expect "$d.raw" "expect.$d.json"
    fi
    qemu-img convert -f raw -O vmdk "$d.raw" "$d.vmdk" || bad "convert $d to vmdk"
    qemu-img convert -f raw -O vdi "$d.raw" "$d.vdi" || bad "convert $d to vdi"
    qemu-img convert -f raw -O vmdk "$d.raw" "$d.base.vmdk" &&
        qemu-img create -q -f vmdk -b "$d.base.vmdk" -F vmdk "$d.child.vmdk" || bad "chain for $d"
    for f in raw vmdk vdi child.vmdk; do
        img=$d.$f
        expect_exit 0 "volumes $img" "$vdkit" volumes --output=json "$img"
        cp out "got.$d.$f.json"
        if python3 "$check" compare "expect.$d.json" "got.$d.$f.json" > cmp.out; then ok; else
            bad "volumes $img differs from util-linux:"; cat cmp.out; fi
    done
done
# The human listing names the kinds and filesystems.
expect_exit 0 "volumes mbr (text)" "$vdkit" volumes mbr.vmdk
says "logical partition numbered 5" "5: logical" && says "swap not mountable" "it is swap space"
says "FAT label" 'label "FATSIX"'
expect_exit 0 "volumes lvm (text)" "$vdkit" volumes lvm.vdi
says "LV listed" "name \"$vg/lva\"" && says "linear" "linear"
expect_exit 0 "volumes 4kn (text)" "$vdkit" volumes 4kn.vmdk
says "4Kn detected" "sector size 4096"
expect_exit 0 "4kn read as 4096 by option" "$vdkit" volumes --sector-size 4096 4kn.raw
expect_exit 2 "a sector size other than 512/4096" "$vdkit" volumes --sector-size 1024 4kn.raw

# ---- mount: every filesystem, read-only, from every storage ---------------------------
mnt=$work/mnt
mkdir -p "$mnt"
# verify TAG DIR: the files written into the filesystem read back the same.
verify() {
    if (cd "$2" && sha256sum --quiet -c "$work/sums.$1"); then ok; else bad "files of $1 differ when mounted"; fi
}
mount_ro() { # mount_ro IMAGE:N TAG
    if "$vdkit" -q mount --read-only "$1" "$mnt" > mount.out 2>&1; then
        mounted=("$mnt")
        verify "$2" "$mnt"
        if touch "$mnt/new" 2> /dev/null; then bad "$1: a read-only mount took a write"; else ok; fi
        expect_exit 0 "umount $1" "$vdkit" umount "$mnt"
        mounted=()
    else
        bad "mount -r $1: $(cat mount.out)"
    fi
}
# Every filesystem from the VMDK; from raw, VDI and the chain one volume of
# each disk (the same code serves every format: the listing above already
# compared them all).
mount_ro mbr.vmdk:1 mbr1; mount_ro mbr.vmdk:5 mbr5; mount_ro mbr.vmdk:6 mbr6
mount_ro gpt.vmdk:1 gpt1; mount_ro gpt.vmdk:2 gpt2; mount_ro gpt.vmdk:3 gpt3
mount_ro 4kn.vmdk:1 4kn1; mount_ro 4kn.vmdk:2 4kn2
mount_ro nofs.vmdk nofs1
mount_ro lvm.vmdk:2 lvm2; mount_ro "lvm.vmdk:$vg/lvb" lvm3
mount_ro mbr.raw:6 mbr6; mount_ro gpt.vdi:2 gpt2; mount_ro 4kn.child.vmdk:1 4kn1; mount_ro nofs.vdi nofs1
mount_ro lvm.child.vmdk:2 lvm2; mount_ro gpt.child.vmdk:1 gpt1; mount_ro mbr.vdi:5 mbr5

# ---- read-write through a chain: only the child changes -------------------------------
cp mbr.base.vmdk base.before.vmdk
if "$vdkit" -q mount mbr.child.vmdk:5 "$mnt" > mount.out 2>&1; then
    mounted=("$mnt")
    random_bytes 123K > newfile
    cp newfile "$mnt/newfile" && ok || bad "write into the rw mount"
    expect_exit 0 "umount rw" "$vdkit" umount "$mnt"
    mounted=()
else
    bad "mount rw: $(cat mount.out)"
fi
expect_exit 0 "the base is unchanged (qemu-img compare)" qemu-img compare -f vmdk -F vmdk base.before.vmdk mbr.base.vmdk
expect_exit 1 "the child changed" qemu-img compare -f vmdk -F vmdk mbr.child.vmdk mbr.base.vmdk
expect_exit 0 "the image is unlocked after umount" "$vdkit" info mbr.child.vmdk
if "$vdkit" -q mount -r mbr.child.vmdk:5 "$mnt" > mount.out 2>&1; then
    mounted=("$mnt")
    if cmp -s newfile "$mnt/newfile"; then ok; else bad "the file written through the rw mount is not there"; fi
    verify mbr5 "$mnt"
    "$vdkit" -q umount "$mnt"; mounted=()
else
    bad "remount: $(cat mount.out)"
fi

# ---- errors ---------------------------------------------------------------------
expect_exit 2 "swap is refused" "$vdkit" mount mbr.vmdk:2 "$mnt"; says "swap named" "swap"
expect_exit 2 "extended is refused" "$vdkit" mount mbr.vmdk:3 "$mnt"; says "extended named" "extended partition"
expect_exit 2 "an LVM PV is refused" "$vdkit" mount lvm.vmdk:1 "$mnt"; says "PV named" "LVM physical volume"
expect_exit 2 "no such volume" "$vdkit" mount mbr.vmdk:9 "$mnt"; says "volume 9" "no volume 9"
expect_exit 2 "several volumes need N" "$vdkit" mount mbr.vmdk "$mnt"; says "IMAGE:N asked" "IMAGE:N"
# The count is the listing's; the mountable ones are named with their numbers (not swap, not the extended one).
"$vdkit" volumes mbr.vmdk > listing
says "count as listed" "has $(grep -c '^[0-9]*: ' listing) volumes"
says "mountable listed" 'mountable: 1 (ext4 "rootfs", 16.000 MiB), 5 (ext4 "logi5", 10.000 MiB), 6 (vfat "FATSIX", 40.000 MiB)'
says "how to pick one" "'vdkit mount mbr.vmdk:1 DIR'"
expect_exit 2 "umount of nothing" "$vdkit" umount "$mnt"
if "$vdkit" -q mount mbr.vmdk:1 "$mnt" > mount.out 2>&1; then
    mounted=("$mnt")
    expect_exit 4 "mounting twice" "$vdkit" mount -r mbr.vdi:1 "$mnt"; says "already mounted named" "already"
    mkdir -p mnt2
    expect_exit 1 "the same image rw elsewhere (locked)" "$vdkit" mount mbr.vmdk:5 mnt2
    exec 7< "$mnt/a.bin"
    expect_exit 4 "busy umount" "$vdkit" umount "$mnt"; says "busy says --force" "--force"
    expect_exit 0 "umount --force" "$vdkit" umount --force "$mnt"
    exec 7<&-
    mounted=()
    if mountpoint -q "$mnt"; then bad "still mounted after --force"; else ok; fi
    sleep 1
    expect_exit 0 "unlocked after the forced umount and the last close" "$vdkit" info mbr.vmdk
else
    bad "mount rw mbr:1: $(cat mount.out)"
fi

# ---- a killed daemon: umount (plain and --force) and mount clean up -------------------
# daemon_state: the state file of the mount on $mnt (the daemon's pid, loop device, view).
daemon_state() { grep -lx "dir=$(realpath "$mnt")" /run/vdkit/mounts/*/state 2> /dev/null | head -1; }
for how in umount umount--force mount; do
    if ! "$vdkit" -q mount mbr.vmdk:1 "$mnt" > mount.out 2>&1; then bad "mount before kill -9 ($how): $(cat mount.out)"; continue; fi
    mounted=("$mnt")
    st=$(daemon_state)
    pid=$(sed -n 's/^pid=//p' "$st"); view=$(sed -n 's/^view=//p' "$st"); loop=$(sed -n 's/^loop=//p' "$st")
    kill -9 "$pid"
    case $how in
    umount) expect_exit 0 "umount after kill -9" "$vdkit" umount "$mnt" ;;
    umount--force) expect_exit 0 "umount --force after kill -9" "$vdkit" umount --force "$mnt" ;;
    mount) expect_exit 2 "mount after kill -9 cleans the stale state" "$vdkit" mount mbr.vmdk:2 "$mnt"
        says "stale mount named" "had a stale mount of mbr.vmdk (its daemon, pid $pid, is gone)" ;;
    esac
    [ "$how" = mount ] || says "$how names the dead daemon" "the mount's daemon (pid $pid) is gone; cleaned up the filesystem on"
    says "$how: the view cleaned" "the FUSE view $view"
    says "$how: the loop device detached" "loop device $loop"
    mounted=()
    if mountpoint -q "$mnt" || grep -qF " $view " /proc/self/mountinfo; then bad "$how: a mount is left"; else ok; fi
    if losetup "$loop" 2> /dev/null | grep -qF "$view"; then bad "$how: $loop still serves the view"; else ok; fi
    if [ -e "$(dirname "$st")" ]; then bad "$how: state $(dirname "$st") left"; else ok; fi
    expect_exit 0 "$how: the image is unlocked (writable open)" "$vdkit" info mbr.vmdk
    if "$vdkit" -q mount -r mbr.vmdk:5 "$mnt" > mount.out 2>&1; then
        mounted=("$mnt")
        verify mbr5 "$mnt"
        expect_exit 0 "$how: umount of the new mount" "$vdkit" umount "$mnt"
        mounted=()
    else
        bad "$how: a new mount on the same DIR: $(cat mount.out)"
    fi
done

# ---- damaged tables ----------------------------------------------------------------
for kind in gpt-header-crc gpt-array-crc gpt-both; do
    for i in 1 2 3; do
        python3 "$check" damage "$kind" gpt.raw "d.$kind.$i.raw" "$VDKIT_TEST_SEED.$i"
        expect_exit 3 "$kind variant $i" timeout 30 "$vdkit" volumes --output=json "d.$kind.$i.raw"
        case $kind in
        gpt-both) says "$kind says no GPT" "no valid GPT" ;;
        *) says "$kind names the backup" "backup GPT at LBA" &&
            python3 "$check" compare expect.gpt.json out > cmp.out && ok || { bad "$kind $i: volumes differ from the original's"; cat cmp.out; } ;;
        esac
    done
done
python3 "$check" damage gpt-header-crc 4kn.raw d.4kn.raw "$VDKIT_TEST_SEED"
expect_exit 3 "4Kn primary header damaged" timeout 30 "$vdkit" volumes --output=json d.4kn.raw
python3 "$check" compare expect.4kn.json out > cmp.out && ok || { bad "4kn backup: volumes differ"; cat cmp.out; }
for kind in overlap past-end ebr-loop; do
    for i in 1 2 3; do
        python3 "$check" damage "$kind" mbr.raw "d.$kind.$i.raw" "$VDKIT_TEST_SEED.$i"
        img=d.$kind.$i.raw
        if [ "$i" = 1 ]; then qemu-img convert -f raw -O vdi "$img" "d.$kind.$i.vdi" && img=d.$kind.$i.vdi; fi
        expect_exit 3 "$kind variant $i" timeout 30 "$vdkit" volumes "$img"
        case $kind in
        overlap) says "$kind finding" "overlap"
            says "$kind: 1 not mountable" "not mountable: it overlaps partition 2 (mounting one could write into the other)"
            says "$kind: 2 not mountable" "not mountable: it overlaps partition 1"
            expect_exit 2 "$kind: partition 1 is not mounted" "$vdkit" mount -r "$img:1" "$mnt"
            says "$kind: mount names the overlap" "overlaps partition 2" ;;
        past-end) says "$kind finding" "extends past the disk's end"
            n=$(sed -n 's/.*partition \([0-9]*\) (sectors.*extends past.*/\1/p' out | head -1)
            expect_exit 2 "a partition past the end ($n) is not mounted" "$vdkit" mount -r "$img:$n" "$mnt"
            says "past the end named" "past the disk's end" ;;
        ebr-loop) says "$kind finding" "loops back" ;;
        esac
    done
done
# A hybrid MBR (sgdisk): the GPT's volumes, and a note naming the hybrid entries.
cp gpt.raw hybrid.raw
if sgdisk --hybrid=1 hybrid.raw > sgdisk.out 2>&1; then
    expect_exit 0 "hybrid MBR" "$vdkit" volumes --output=json hybrid.raw
    says "hybrid noted" "hybrid MBR"
    python3 "$check" compare expect.gpt.json out > cmp.out && ok || { bad "hybrid: volumes differ from the GPT's"; cat cmp.out; }
else
    bad "sgdisk --hybrid: $(cat sgdisk.out)"
fi

finish
