//! Split files as object storage hands them back (damaged, cut short or hostile): reading the
//! footer never panics, and a footer it accepts names only plain files that lie inside the
//! split, and lookup ranges inside those files.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(footer) = weft_index::split::footer_of(data) {
        for file in &footer.files {
            assert!(!file.name.contains('/') && !file.name.contains('\\'));
            assert!(file.name != ".." && file.name != ".");
            assert!(file.offset.checked_add(file.len).is_some_and(|end| end <= data.len() as u64));
        }
        for range in &footer.lookup {
            let file = footer.files.iter().find(|f| f.name == range.file);
            assert!(file.is_some_and(|f| range.start.checked_add(range.len).is_some_and(|end| end <= f.len)));
        }
    }
});
