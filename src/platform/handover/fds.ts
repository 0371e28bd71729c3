/**
 * The file descriptors a userspace data-plane daemon hands to its successor in a planned restart
 * (docs/design.md, "A planned restart (an upgrade)"): the successor takes duplicates of the old
 * daemon's TUN and UDP fds with pidfd_getfd(2) (src/native.ts `takeFd`), the same open files, so
 * whatever the kernel queued on them while the two swapped is read by the successor, not dropped.
 */
import { z } from "zod";

/** The old daemon's fds and what the successor cannot learn from an fd itself. */
export const handedFdsSchema = z.object({
  /** The old daemon's pid (pidfd_open). */
  pid: z.number().int().min(1),
  tun: z.object({ fd: z.number().int().min(0), name: z.string().min(1).max(15) }),
  udp: z.object({
    fd: z.number().int().min(0),
    port: z.number().int().min(1).max(65535),
    family: z.union([z.literal(4), z.literal(6)]),
    gro: z.boolean(),
  }),
});
export type HandedFds = z.infer<typeof handedFdsSchema>;
