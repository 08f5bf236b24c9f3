//! Test-only (feature `crash-probe`): lets a test kill the VM on purpose, to check that the
//! shipped failure policy brings it back. Never compiled into a shipped build.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

const HEADER: &str = "x-wasm-iap-crash-probe";

#[allow(clippy::panic)]
pub(crate) fn maybe_crash() {
    if let Ok(Some(_)) = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, HEADER) {
        panic!("crash probe: the test asked this VM to die");
    }
}
