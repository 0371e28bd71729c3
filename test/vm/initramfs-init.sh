#!/bin/busybox sh
# PID 1 of the podcrypt test VM (busybox, inside the initramfs). It loads the 9p modules, mounts
# the host root read-only at /newroot, gives it writable tmpfs for /tmp, /run (/var/run), /var/tmp
# and /dev/shm, mounts the host's results directory (9p tag "results") at /run/podcrypt-vm (and the
# checkout, tag "repo", where those hid it), runs
# /run/podcrypt-vm/stage2.sh in a chroot of the host root, records its exit status in
# /run/podcrypt-vm/rc and powers off. Any failure before the chroot writes a reason to the console
# and powers off; the host notices that no rc file appeared.
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
  echo "podcrypt-vm: $*" >/dev/console
  poweroff -f
  sleep 60
}

while read -r mod; do
  insmod "/modules/$mod" || fail "insmod $mod failed"
done </modules/order

mkdir -p /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /newroot ||
  fail "mounting the host root over 9p failed"
for d in proc sys dev tmp run var/tmp; do [ -d "/newroot/$d" ] || fail "/$d missing in the host root"; done
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
ln -sf /proc/self/fd /newroot/dev/fd
ln -sf /proc/self/fd/0 /newroot/dev/stdin
ln -sf /proc/self/fd/1 /newroot/dev/stdout
ln -sf /proc/self/fd/2 /newroot/dev/stderr
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mount -t tmpfs -o mode=1777 tmpfs /newroot/var/tmp
mount -t tmpfs -o mode=755 tmpfs /newroot/run
mkdir -p /newroot/run/podcrypt-vm /newroot/run/netns /newroot/run/lock
mount -t 9p -o trans=virtio,version=9p2000.L,cache=none,msize=512000 results /newroot/run/podcrypt-vm ||
  fail "mounting the results share failed"
# A checkout under a path the tmpfs mounts above hide (a clone in /tmp): boot.sh shares it as "repo"
# and names it in repo-path; mount it at the same path.
if [ -f /newroot/run/podcrypt-vm/repo-path ]; then
  repo=$(cat /newroot/run/podcrypt-vm/repo-path)
  if [ ! -f "/newroot$repo/package.json" ]; then
    mkdir -p "/newroot$repo" &&
      mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 repo "/newroot$repo" ||
      fail "mounting the checkout at $repo failed"
  fi
fi
ip link set lo up 2>/dev/null
# Module autoloading (veth, dummy, xfrm algorithms...) runs the kernel's modprobe helper in this
# initramfs's root, not the chroot's: point it at the host root's modprobe.
printf '#!/bin/sh\nexec /bin/chroot /newroot /sbin/modprobe "$@"\n' >/bin/modprobe-hostroot
chmod 755 /bin/modprobe-hostroot
echo /bin/modprobe-hostroot >/proc/sys/kernel/modprobe

# PODCRYPT_VM marks the environment for tests that need this kernel (see test/vm/vm-env.ts).
env -i PODCRYPT_VM=1 HOME=/root TERM=dumb LANG=C.UTF-8 \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  chroot /newroot /bin/bash /run/podcrypt-vm/stage2.sh
echo $? >/newroot/run/podcrypt-vm/rc
sync
umount /newroot/run/podcrypt-vm
poweroff -f
sleep 60
