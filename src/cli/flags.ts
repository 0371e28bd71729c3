import { InvalidArgumentError } from "commander";
import { ValidationError } from "../errors/index.js";

/** A commander argument parser for a decimal integer flag, with an error naming the flag. */
export function parseIntFlag(flag: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    if (!/^-?\d+$/.test(value.trim()))
      throw new InvalidArgumentError(`${flag} takes an integer, got "${value}"`);
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`${flag} must be from ${min} to ${max}, got ${n}`);
    return n;
  };
}

/**
 * Checks a TUN interface name given on the command line. IFNAMSIZ is 16 with the NUL; '/' and
 * whitespace would break the socket path and `ip`.
 */
export function checkIfname(ifname: string): void {
  if (ifname.length === 0 || ifname.length > 15 || /[/\s:]/.test(ifname) || ifname === "." || ifname === "..")
    throw new ValidationError(
      "IFNAME",
      `"${ifname}" is not a valid interface name (1-15 characters, no '/', ':' or spaces)`,
    );
}
