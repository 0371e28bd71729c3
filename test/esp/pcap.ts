/**
 * A minimal classic pcap writer (the libpcap file format: 24-byte global header, 16-byte record
 * headers, little-endian magic 0xa1b2c3d4) for raw IP packets, LINKTYPE_RAW (101).
 */
export const LINKTYPE_RAW = 101;

export function pcapFile(packets: Buffer[], startSeconds = 1_700_000_000): Buffer {
  const global = Buffer.alloc(24);
  global.writeUInt32LE(0xa1b2c3d4, 0);
  global.writeUInt16LE(2, 4);
  global.writeUInt16LE(4, 6);
  global.writeInt32LE(0, 8); // thiszone
  global.writeUInt32LE(0, 12); // sigfigs
  global.writeUInt32LE(65535, 16); // snaplen
  global.writeUInt32LE(LINKTYPE_RAW, 20);
  const parts: Buffer[] = [global];
  packets.forEach((p, i) => {
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(startSeconds + i, 0);
    rec.writeUInt32LE(0, 4);
    rec.writeUInt32LE(p.length, 8);
    rec.writeUInt32LE(p.length, 12);
    parts.push(rec, p);
  });
  return Buffer.concat(parts);
}
