import { writeFile } from "node:fs/promises";
import { Session } from "node:inspector/promises";

/** A running V8 CPU profile of the calling thread. */
export interface Profile {
  /** Stops profiling and writes the profile (.cpuprofile JSON, for Chrome DevTools) to `file`. */
  stop(file: string): Promise<void>;
}

/** Starts V8's CPU profiler in the calling thread (main or worker). */
export async function startProfile(): Promise<Profile> {
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.start");
  return {
    async stop(file) {
      const { profile } = await session.post("Profiler.stop");
      await writeFile(file, JSON.stringify(profile));
      session.disconnect();
    },
  };
}
