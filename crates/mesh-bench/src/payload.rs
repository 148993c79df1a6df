//! Deterministic payloads: every message carries its own identity in its first bytes, so
//! any downloaded message can be regenerated and compared byte for byte without keeping
//! what was sent in memory.

/// The payload of message `seq` of worker `worker`, `size` bytes long (at least the header).
pub fn generate(worker: u32, seq: u64, size: usize) -> Vec<u8> {
    let header = format!("MESHBENCH:{worker}:{seq}:{size};");
    let mut out = Vec::with_capacity(size.max(header.len()));
    out.extend_from_slice(header.as_bytes());
    fill(&mut out, seed(worker, seq), size);
    out
}

/// Appends xorshift output until `out` is `size` bytes long, a word at a time (the
/// benchmark shares the machine with the server, so its own work must be cheap).
fn fill(out: &mut Vec<u8>, mut state: u64, size: usize) {
    let start = out.len();
    if size <= start {
        return;
    }
    out.resize(size, 0);
    for word in out[start..].chunks_mut(8) {
        state = xorshift(state);
        let bytes = state.to_le_bytes();
        word.copy_from_slice(&bytes[..word.len()]);
    }
}

/// True when `data` is exactly what [`generate`] made for the identity in its header.
pub fn verify(data: &[u8]) -> bool {
    let Some(end) = data.iter().position(|&b| b == b';') else {
        return false;
    };
    let Ok(header) = std::str::from_utf8(&data[..end]) else {
        return false;
    };
    let parts: Vec<&str> = header.split(':').collect();
    let (Some(w), Some(s), Some(n)) = (
        parts.get(1).and_then(|v| v.parse().ok()),
        parts.get(2).and_then(|v| v.parse().ok()),
        parts.get(3).and_then(|v| v.parse().ok()),
    ) else {
        return false;
    };
    parts.first() == Some(&"MESHBENCH") && generate(w, s, n) == data
}

fn seed(worker: u32, seq: u64) -> u64 {
    (u64::from(worker) << 40) ^ seq ^ 0x9E37_79B9_7F4A_7C15
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// A stream of `total` pseudo-random bytes in `piece`-sized blocks, for large messages:
/// block `i` is derived from `(stream_id, i)`, so sender and checker agree without
/// holding the data.
pub fn block(stream_id: u64, index: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    fill(
        &mut out,
        xorshift(seed(0, stream_id ^ (index << 20)) | 1),
        len,
    );
    out
}

/// Checks a downloaded large message against [`block`] output as bytes arrive, without
/// hashing: the expected bytes are regenerated block by block and compared.
pub struct StreamCheck {
    stream_id: u64,
    block_len: usize,
    index: u64,
    expected: Vec<u8>,
    offset: usize,
    pub ok: bool,
    pub seen: u64,
}

impl StreamCheck {
    pub fn new(stream_id: u64, block_len: usize) -> Self {
        StreamCheck {
            stream_id,
            block_len,
            index: 0,
            expected: Vec::new(),
            offset: 0,
            ok: true,
            seen: 0,
        }
    }

    /// Feeds the next downloaded bytes; `total` is the message size (the last block is short).
    pub fn feed(&mut self, mut data: &[u8], total: u64) {
        self.seen += data.len() as u64;
        while !data.is_empty() && self.ok {
            if self.offset == self.expected.len() {
                let start = self.index * self.block_len as u64;
                if start >= total {
                    self.ok = false;
                    return;
                }
                let len = (total - start).min(self.block_len as u64) as usize;
                self.expected = block(self.stream_id, self.index, len);
                self.index += 1;
                self.offset = 0;
            }
            let n = data.len().min(self.expected.len() - self.offset);
            if data[..n] != self.expected[self.offset..self.offset + n] {
                self.ok = false;
            }
            self.offset += n;
            data = &data[n..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_payloads_verify_and_corruption_is_caught() {
        for size in [0, 10, 1024, 100 * 1024] {
            let mut p = generate(3, 77, size);
            assert!(verify(&p));
            let last = p.len() - 1;
            p[last] ^= 1;
            assert!(!verify(&p));
        }
        assert!(!verify(b"hello"));
        assert_ne!(generate(1, 1, 64), generate(1, 2, 64));
    }

    #[test]
    fn stream_check_accepts_the_blocks_in_any_slicing_and_catches_a_flip() {
        let total = 3 * 1000 + 17;
        let data: Vec<u8> = (0..4)
            .flat_map(|i| block(9, i, if i < 3 { 1000 } else { 17 }))
            .collect();
        let mut ok = StreamCheck::new(9, 1000);
        for piece in data.chunks(333) {
            ok.feed(piece, total);
        }
        assert!(ok.ok && ok.seen == total);
        let mut bad_data = data.clone();
        bad_data[2500] ^= 1;
        let mut bad = StreamCheck::new(9, 1000);
        bad.feed(&bad_data, total);
        assert!(!bad.ok);
    }
}
