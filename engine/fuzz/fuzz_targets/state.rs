//! `UserState::load` on any bytes: never a panic; a state it loads dumps to bytes
//! that load again to the same state and dump to the same bytes (the round trip a
//! worker's table relies on).
#![no_main]

use _engine::state::UserState;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(state) = UserState::load(data) else {
        return;
    };
    let stored = state.dump();
    let again = match UserState::load(&stored) {
        Ok(again) => again,
        Err(e) => panic!(
            "a dumped state does not load: {e}\n{}",
            String::from_utf8_lossy(&stored)
        ),
    };
    assert_eq!(
        String::from_utf8_lossy(&again.dump()),
        String::from_utf8_lossy(&stored),
        "dump(load(dump(s))) != dump(s)"
    );
    assert_eq!(again, state, "load(dump(s)) != s");
});
