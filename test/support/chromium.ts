/**
 * Headless Chromium (Debian's `chromium` package) driven over the DevTools protocol on a pipe
 * (`--remote-debugging-pipe`: requests on fd 3, answers and events on fd 4, each a JSON message
 * ended by a NUL byte). No npm library: none is needed for navigate, evaluate and screenshot, and
 * the ones that exist download a browser of their own.
 *
 * The browser runs inside a network namespace the caller gives (one with loopback only, so it
 * reaches nothing but what the test relays into it), with background networking, updates, sync
 * and extensions off.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import type { NetnsGroup } from "./netns.js";

/** Where Debian installs it. */
export const CHROMIUM = "/usr/bin/chromium";

/** Why Chromium cannot run here, or false. */
export function chromiumMissing(): string | false {
  return existsSync(CHROMIUM)
    ? false
    : `${CHROMIUM} is not installed (apt-get install chromium; scripts/setup.sh does)`;
}

interface Pending {
  resolve: (v: Record<string, unknown>) => void;
  reject: (e: Error) => void;
}

/** One headless browser with one page. */
export class Chromium {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private buffer = Buffer.alloc(0);
  private session = "";
  private exited: string | undefined;

  private constructor(
    private readonly input: Writable,
    output: Readable,
    private readonly profile: string,
    private readonly stderr: () => string,
  ) {
    output.on("data", (chunk: Buffer) => this.receive(chunk));
    // The pipe breaks when the browser exits (EPIPE, ECONNRESET): the exit handler reports that.
    input.on("error", () => undefined);
    output.on("error", () => undefined);
  }

  /** Starts the browser in `ns` (killed by `lab`'s cleanup too) and attaches to its first page. */
  static async launch(lab: NetnsGroup, ns: string): Promise<Chromium> {
    const profile = mkdtempSync(join(tmpdir(), "podcrypt-chromium-"));
    // Chromium keeps its process-singleton socket in a directory of its own under TMPDIR, which a
    // killed browser leaves behind: under the profile, it goes with the profile.
    const tmp = join(profile, "tmp");
    mkdirSync(tmp);
    const child = lab.spawn(
      ns,
      CHROMIUM,
      [
        "--headless=new",
        "--no-sandbox", // root in a test namespace; the page is our own
        "--remote-debugging-pipe",
        `--user-data-dir=${profile}`,
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--metrics-recording-only",
        "--mute-audio",
        "--window-size=1280,900",
        "about:blank",
      ],
      { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"], env: { ...process.env, TMPDIR: tmp } },
    );
    let err = "";
    child.stderr?.on("data", (d: Buffer) => {
      err = (err + d.toString()).slice(-4000);
    });
    const browser = new Chromium(child.stdio[3] as Writable, child.stdio[4] as Readable, profile, () => err);
    child.once("exit", (code, signal) => {
      browser.exited = `chromium exited (${code ?? signal}): ${err.slice(-1000)}`;
      for (const p of browser.pending.values()) p.reject(new Error(browser.exited));
      browser.pending.clear();
    });
    const { targetInfos } = (await browser.send("Target.getTargets")) as {
      targetInfos: { targetId: string; type: string }[];
    };
    const page = targetInfos.find((t) => t.type === "page");
    if (page === undefined) throw new Error(`chromium has no page: ${err}`);
    const { sessionId } = (await browser.send("Target.attachToTarget", {
      targetId: page.targetId,
      flatten: true,
    })) as { sessionId: string };
    browser.session = sessionId;
    await browser.send("Page.enable", {}, true);
    return browser;
  }

  private receive(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (let end = this.buffer.indexOf(0); end >= 0; end = this.buffer.indexOf(0)) {
      const msg = JSON.parse(this.buffer.subarray(0, end).toString()) as {
        id?: number;
        result?: Record<string, unknown>;
        error?: { message: string };
      };
      this.buffer = this.buffer.subarray(end + 1);
      if (msg.id === undefined) continue; // an event
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.error !== undefined) p?.reject(new Error(`DevTools: ${msg.error.message}`));
      else p?.resolve(msg.result ?? {});
    }
  }

  /** One DevTools command; `onPage` sends it to the attached page's session. */
  send(
    method: string,
    params: Record<string, unknown> = {},
    onPage = false,
  ): Promise<Record<string, unknown>> {
    if (this.exited !== undefined) return Promise.reject(new Error(this.exited));
    const id = this.nextId++;
    const msg = { id, method, params, ...(onPage ? { sessionId: this.session } : {}) };
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.input.write(`${JSON.stringify(msg)}\0`);
    });
  }

  /** Loads `url` in the page. */
  async navigate(url: string): Promise<void> {
    const r = await this.send("Page.navigate", { url }, true);
    if (typeof r["errorText"] === "string") throw new Error(`loading ${url}: ${r["errorText"]}`);
  }

  /** Evaluates `expression` in the page and returns its value (JSON-serialisable). */
  async evaluate<T>(expression: string): Promise<T> {
    const r = (await this.send("Runtime.evaluate", { expression, returnByValue: true }, true)) as {
      result: { value?: T };
      exceptionDetails?: { text: string; exception?: { description?: string } };
    };
    if (r.exceptionDetails !== undefined)
      throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result.value as T;
  }

  /** A PNG of the page as it is drawn now. */
  async screenshot(): Promise<Buffer> {
    const r = (await this.send(
      "Page.captureScreenshot",
      { format: "png", captureBeyondViewport: true },
      true,
    )) as {
      data: string;
    };
    return Buffer.from(r.data, "base64");
  }

  /** What the browser printed last (for failure messages). */
  get log(): string {
    return this.stderr();
  }

  /** Closes the browser and removes its profile. */
  async close(): Promise<void> {
    await this.send("Browser.close").catch(() => undefined);
    rmSync(this.profile, { recursive: true, force: true });
  }
}
