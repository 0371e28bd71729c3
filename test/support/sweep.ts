// Removes namespaces left by an earlier, crashed test run before the namespace tier starts.
import { sweepStaleTestNetns } from "./netns.js";

const stale = await sweepStaleTestNetns();
if (stale.length > 0) process.stdout.write(`swept ${stale.length} stale test namespaces\n`);
