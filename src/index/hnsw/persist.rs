//! The graph's file: a header, then each per-node block as it lies in memory, little-endian,
//! then the upper-level lists and a trailer. Loading reads it back into the same blocks
//! (a 1M-node graph is ~1.6 GB: a few seconds from the page cache), and checks sizes and
//! every link, so a damaged file is refused rather than walked.

use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use super::{Hnsw, HnswParams};

const MAGIC: &[u8; 8] = b"IMGHNSW1";
const TRAILER: &[u8; 8] = b"HNSWEND1";

impl Hnsw {
    /// Writes the graph to `path` (not fsynced: the caller decides).
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
        w.write_all(MAGIC)?;
        let n = self.keys.len() as u64;
        for v in [
            self.dim as u64,
            self.params.m as u64,
            self.params.ef_construction as u64,
            n,
        ] {
            w.write_all(&v.to_le_bytes())?;
        }
        let (entry, top) = self.entry.map_or((u32::MAX, 0), |(s, l)| (s, l));
        w.write_all(&entry.to_le_bytes())?;
        w.write_all(&[top])?;
        for k in &self.keys {
            w.write_all(&k.to_le_bytes())?;
        }
        w.write_all(&self.levels)?;
        let deleted: Vec<u8> = self.deleted.iter().map(|&d| d as u8).collect();
        w.write_all(&deleted)?;
        for x in &self.inv_norms {
            w.write_all(&x.to_le_bytes())?;
        }
        for chunk in self.codes.chunks(1 << 20) {
            let bytes: Vec<u8> = chunk.iter().map(|&c| c as u8).collect();
            w.write_all(&bytes)?;
        }
        write_u32s(&mut w, &self.links0)?;
        let mut upper: Vec<(&u32, &Vec<u32>)> = self.upper.iter().collect();
        upper.sort_by_key(|(s, _)| **s);
        w.write_all(&(upper.len() as u64).to_le_bytes())?;
        for (slot, list) in upper {
            w.write_all(&slot.to_le_bytes())?;
            w.write_all(&(list.len() as u32).to_le_bytes())?;
            write_u32s(&mut w, list)?;
        }
        w.write_all(TRAILER)?;
        w.into_inner().map_err(|e| e.into_error())?.flush()
    }

    /// Reads a graph written by `save`.
    pub fn load(path: &Path) -> io::Result<Self> {
        let bad =
            |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("graph file: {what}"));
        let mut r = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(bad("not an imgsearch HNSW graph"));
        }
        let dim = read_u64(&mut r)? as usize;
        let m = read_u64(&mut r)? as usize;
        let ef_construction = read_u64(&mut r)? as usize;
        let n = read_u64(&mut r)? as usize;
        if dim == 0 || dim > 1 << 16 || !(2..=256).contains(&m) || n > u32::MAX as usize {
            return Err(bad("implausible header"));
        }
        let mut g = Hnsw::new(dim, HnswParams { m, ef_construction });
        let entry = read_u32(&mut r)?;
        let mut top = [0u8; 1];
        r.read_exact(&mut top)?;
        g.keys = read_u64s(&mut r, n)?;
        g.levels = read_bytes(&mut r, n)?;
        g.deleted = read_bytes(&mut r, n)?.into_iter().map(|d| d != 0).collect();
        g.inv_norms = read_u32s(&mut r, n)?
            .into_iter()
            .map(f32::from_bits)
            .collect();
        g.codes = read_i8s(&mut r, n * dim)?;
        g.links0 = read_u32s(&mut r, n * g.stride0)?;
        let uppers = read_u64(&mut r)? as usize;
        if uppers > n {
            return Err(bad("more upper-level nodes than nodes"));
        }
        let mut upper = HashMap::with_capacity(uppers);
        for _ in 0..uppers {
            let slot = read_u32(&mut r)?;
            let len = read_u32(&mut r)? as usize;
            let want = g.levels.get(slot as usize).copied().unwrap_or(0) as usize * (m + 1);
            if len != want || want == 0 {
                return Err(bad("an upper-level list does not match its node's level"));
            }
            upper.insert(slot, read_u32s(&mut r, len)?);
        }
        g.upper = upper;
        let mut trailer = [0u8; 8];
        r.read_exact(&mut trailer)?;
        if &trailer != TRAILER || r.read(&mut [0u8; 1])? != 0 {
            return Err(bad("truncated or followed by other data"));
        }
        g.entry = match entry {
            u32::MAX => None,
            s if (s as usize) < n && g.levels[s as usize] == top[0] => Some((s, top[0])),
            _ => return Err(bad("entry node out of range")),
        };
        g.check_links()
            .map_err(|slot| bad(&format!("node {slot} links outside the graph")))?;
        g.slot_of.reserve(n);
        for (slot, (&key, &dead)) in g.keys.iter().zip(&g.deleted).enumerate() {
            if !dead && g.slot_of.insert(key, slot as u32).is_some() {
                return Err(bad("a key is live twice"));
            }
        }
        Ok(g)
    }

    /// Every link names an existing slot and every count fits its list.
    fn check_links(&self) -> Result<(), usize> {
        let n = self.keys.len() as u32;
        for slot in 0..n {
            let s = slot as usize * self.stride0;
            if self.links0[s] as usize > 2 * self.params.m {
                return Err(slot as usize);
            }
            for level in 0..=self.levels[slot as usize] {
                if level > 0 {
                    let stride = self.params.m + 1;
                    let list = self.upper.get(&slot).map_or(&[][..], |l| &l[..]);
                    let at = (level as usize - 1) * stride;
                    if list.get(at).is_none_or(|&c| c as usize > self.params.m) {
                        return Err(slot as usize);
                    }
                }
                if self.links(slot, level).iter().any(|&t| t >= n) {
                    return Err(slot as usize);
                }
            }
        }
        Ok(())
    }
}

fn write_u32s(w: &mut impl Write, xs: &[u32]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(xs.len().min(1 << 18) * 4);
    for chunk in xs.chunks(1 << 18) {
        buf.clear();
        for x in chunk {
            buf.extend_from_slice(&x.to_le_bytes());
        }
        w.write_all(&buf)?;
    }
    Ok(())
}

fn read_bytes(r: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    read_le(r, n, |b: [u8; 1]| b[0])
}

fn read_i8s(r: &mut impl Read, n: usize) -> io::Result<Vec<i8>> {
    read_le(r, n, |b: [u8; 1]| b[0] as i8)
}

fn read_u32s(r: &mut impl Read, n: usize) -> io::Result<Vec<u32>> {
    read_le(r, n, u32::from_le_bytes)
}

fn read_u64s(r: &mut impl Read, n: usize) -> io::Result<Vec<u64>> {
    read_le(r, n, u64::from_le_bytes)
}

/// `n` values of `N` bytes each, read through a 1 MB buffer straight into an exactly sized
/// vector: no second copy of a large block is ever held (the freed copy would stay in the
/// allocator and count as resident memory).
fn read_le<T, const N: usize>(
    r: &mut impl Read,
    n: usize,
    from: impl Fn([u8; N]) -> T,
) -> io::Result<Vec<T>> {
    let mut out = Vec::with_capacity(n);
    let mut buf = vec![0u8; ((n * N).min(1 << 20) / N).max(1) * N];
    while out.len() < n {
        let take = (n - out.len()).min(buf.len() / N);
        r.read_exact(&mut buf[..take * N])?;
        out.extend(buf[..take * N].chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            from(a)
        }));
    }
    Ok(out)
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}
