//! An HTTP ingest body of events (JSON array or NDJSON): decoded and validated, or refused with
//! an error, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|body: &[u8]| {
    let _ = reelrank_ingest::decode_batch::<reelrank_core::Event>(body, 10_000);
});
