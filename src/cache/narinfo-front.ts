/**
 * The served narinfos in memory, compactly: per hash part one small integer into an arena
 * of large buffers holding each narinfo's bytes behind a 4-byte length. A narinfo hit is a
 * `Map` lookup and a view of the arena: no database, no disk.
 *
 * Why not a `Map` of Buffers: a Buffer costs about 100 bytes of JS heap on top of its bytes,
 * and small Buffers are carved out of Node's 8 KiB pool slabs, which stay whole while any
 * slice of them lives. At 100,000 narinfos that was 9 MB of Buffer objects and 56 MB of
 * slabs for 50 MB of narinfos (docs/benchmarks.md, "Binary cache over HTTP"). Here a hash
 * part costs its key string and one Smi in the map, and the narinfo its bytes plus 4.
 *
 * Bytes are only ever appended: a view handed out stays valid whatever happens next
 * (a replaced or deleted narinfo leaves dead bytes; once they outweigh the live ones, the
 * live narinfos are copied into fresh chunks and the old chunks are left to the views still
 * using them and then to the collector).
 */

/** Bytes per chunk (2 MiB: a narinfo is at most 1 MiB, `parseNarinfo`'s bound). */
const CHUNK_BITS = 21;
const CHUNK = 1 << CHUNK_BITS;
/** Chunks addressable in a Smi (31 bits): 1,024 of 2 MiB. */
const MAX_CHUNKS = 1 << (31 - CHUNK_BITS);
/** Dead bytes tolerated before compacting (and at least this share of the arena). */
const MIN_DEAD = 8 * CHUNK;

export class NarinfoFront {
  private readonly at = new Map<string, number>();
  /** Narinfos too large for a chunk (never the case for what an upload accepts). */
  private readonly large = new Map<string, Buffer>();
  private chunks: Buffer[] = [];
  /** Bytes used in the last chunk. */
  private used = CHUNK;
  private liveBytes = 0;
  private deadBytes = 0;

  get size(): number {
    return this.at.size + this.large.size;
  }

  /** Bytes held: the chunks (live, dead and free) and the large narinfos. */
  get heldBytes(): number {
    let n = this.chunks.length * CHUNK;
    for (const b of this.large.values()) n += b.length;
    return n;
  }

  /** The narinfo of `hashPart` (a view of the arena: do not write to it). */
  get(hashPart: string): Buffer | undefined {
    const loc = this.at.get(hashPart);
    if (loc === undefined) return this.large.get(hashPart);
    const chunk = this.chunks[loc >>> CHUNK_BITS] as Buffer;
    const off = loc & (CHUNK - 1);
    const length = chunk.readUInt32LE(off);
    return chunk.subarray(off + 4, off + 4 + length);
  }

  set(hashPart: string, narinfo: Uint8Array): void {
    this.delete(hashPart);
    if (narinfo.length + 4 > CHUNK || this.chunks.length >= MAX_CHUNKS) {
      this.large.set(hashPart, Buffer.from(narinfo));
      return;
    }
    this.at.set(hashPart, this.append(narinfo));
    this.liveBytes += narinfo.length + 4;
  }

  delete(hashPart: string): void {
    if (this.large.delete(hashPart)) return;
    const loc = this.at.get(hashPart);
    if (loc === undefined) return;
    this.at.delete(hashPart);
    const chunk = this.chunks[loc >>> CHUNK_BITS] as Buffer;
    const length = chunk.readUInt32LE(loc & (CHUNK - 1)) + 4;
    this.liveBytes -= length;
    this.deadBytes += length;
    if (this.deadBytes > MIN_DEAD && this.deadBytes > this.liveBytes) this.compact();
  }

  private append(narinfo: Uint8Array): number {
    if (this.used + 4 + narinfo.length > CHUNK) {
      this.chunks.push(Buffer.allocUnsafeSlow(CHUNK));
      this.used = 0;
    }
    const index = this.chunks.length - 1;
    const chunk = this.chunks[index] as Buffer;
    const off = this.used;
    chunk.writeUInt32LE(narinfo.length, off);
    chunk.set(narinfo, off + 4);
    this.used += 4 + narinfo.length;
    return (index << CHUNK_BITS) | off;
  }

  /** Copy the live narinfos into fresh chunks; the old ones go once no view uses them. */
  private compact(): void {
    const old = this.chunks;
    this.chunks = [];
    this.used = CHUNK;
    for (const [hashPart, loc] of this.at) {
      const chunk = old[loc >>> CHUNK_BITS] as Buffer;
      const off = loc & (CHUNK - 1);
      const length = chunk.readUInt32LE(off);
      this.at.set(hashPart, this.append(chunk.subarray(off + 4, off + 4 + length)));
    }
    this.deadBytes = 0;
  }
}
