//! Which service names can be keys of a NATS key-value bucket.

use kernel_core::store::StoreError;

/// The longest key this store uses for a service (the name of a set-aside copy adds a suffix).
pub const MAX_KEY_LEN: usize = 200;

/// A service name that can be a key of the bucket: 1 to [`MAX_KEY_LEN`] bytes of `A-Z a-z 0-9
/// - _ = /`, with single dots between tokens (not first, not last, never two in a row).
pub fn check_key(service: &str) -> Result<(), StoreError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '=' | '/' | '.');
    let well_formed = !service.is_empty()
        && service.chars().all(allowed)
        && !service.starts_with('.')
        && !service.ends_with('.')
        && !service.contains("..");
    if !well_formed {
        return Err(StoreError::BadName(service.to_owned()));
    }
    if service.len() > MAX_KEY_LEN {
        return Err(StoreError::NameTooLong {
            len: service.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_key;

    #[test]
    fn keys_follow_the_bucket_rules() {
        for good in ["echo", "a.b", "a-b_c=d/e", "x9"] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in ["", ".a", "a.", "a..b", "a b", "a*", "a>", "é"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_key(&"a".repeat(201)).is_err());
    }
}
