//! OwnTracks: any body gives a ping, nothing to store, or an error, never a panic; and its
//! Basic credentials are read without one.
#![no_main]

use handoff_server::ingest::owntracks::{basic_auth, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = jiff::Timestamp::from_second(1_723_410_000).expect("a time");
    if let Ok(Some(p)) = decode(data, now) {
        assert!(
            (-180.0..=180.0).contains(&p.lon) && (-90.0..=90.0).contains(&p.lat),
            "{p:?}"
        );
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok((user, password)) = basic_auth(text)
    {
        assert!(!user.is_empty() && !password.is_empty());
    }
});
