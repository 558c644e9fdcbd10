/** Hashing shared by the balancers (ring_hash's ring, subsetting's per-round order). */

/** murmur3 x86_32 of the string's UTF-16LE bytes (for ASCII-free definitions: 2 bytes per UTF-16 code unit). */
export function murmur3(s: string, seed = 0): number {
  let h = seed >>> 0;
  const n = s.length;
  const pairs = n & ~1;
  let i = 0;
  for (; i < pairs; i += 2) {
    let k = (s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16)) >>> 0;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (n & 1) {
    // A 2-byte tail: murmur3's tail step with tail[0] | tail[1] << 8.
    let k = s.charCodeAt(i);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= n * 2;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
