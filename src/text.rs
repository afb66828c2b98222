//! Small text helpers shared by every layer (no dependency on any module of this crate).

/// Client input quoted for a message: at most 64 characters of it.
pub fn quoted(input: &str) -> String {
    match input.char_indices().nth(64) {
        Some((cut, _)) => format!("{:?}…", &input[..cut]),
        None => format!("{input:?}"),
    }
}

/// FNV-1a, 64 bits, over `parts` in order: stable across builds, platforms and Rust
/// versions (std's hasher is not), so every replica computes the same value. Used for a
/// tick's jitter and the leader's advisory lock key.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_values() {
        // From the FNV reference (draft-eastlake-fnv): "" and "a".
        assert_eq!(fnv1a(&[]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            fnv1a(&[b"ab", b"c"]),
            fnv1a(&[b"abc"]),
            "parts are concatenated"
        );
    }

    #[test]
    fn quoting_cuts_long_input() {
        assert_eq!(quoted("UTC "), "\"UTC \"");
        assert!(quoted(&"x".repeat(100)).ends_with("…"));
    }
}
