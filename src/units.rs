//! Quantities in words, for every report and message: one formatter, so the ladder, the
//! report and the client's warnings say a size the same way.

/// A byte count in words: `16 KiB`, `1 MiB`, `100 B`.
pub fn size(n: u64) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{} MiB", n >> 20)
    } else if n >= 1024 && n % 1024 == 0 {
        format!("{} KiB", n >> 10)
    } else if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / 1_048_576.0)
    } else if n >= 10 * 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(16384), "16 KiB");
        assert_eq!(size(3 << 20), "3 MiB");
        assert_eq!(size(2_500_000), "2.4 MiB");
        assert_eq!(size(20_000), "19.5 KiB");
        assert_eq!(size(100), "100 B");
    }
}
