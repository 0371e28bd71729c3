/**
 * Where the kernel tier runs. test/vm/initramfs-init.sh sets PODCRYPT_VM=1 for everything it
 * starts inside the test VM (Debian's kernel, with the WireGuard, ESP and XFRM modules). Tests that
 * need that kernel pass `vmOnly` as their `skip` option, so they report as skipped elsewhere.
 */
export const IN_VM = process.env.PODCRYPT_VM === "1";

/** `skip` option for node:test: false inside the VM, otherwise the reason. */
export const vmOnly: false | string = IN_VM
  ? false
  : "needs the kernel test VM (PODCRYPT_VM=1); run test/vm/run.sh";
