// Preloaded into every test process by scripts/test.sh (node --import, which the test runner passes
// on to each test file's process): stdout and stderr become blocking. --test-force-exit ends a test
// file's process with process.exit() once its tests finish, and the runner's pipe to that process is
// asynchronous: without this the last reports still queued were lost, so a file whose report passed
// the pipe's buffer showed fewer tests than it ran (the manifests file: 30 of 39, about one run in
// three), and a failure among them would have gone unseen.
import process from "node:process";

for (const stream of [process.stdout, process.stderr]) stream._handle?.setBlocking?.(true);
