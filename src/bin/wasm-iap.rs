//! `wasm-iap check FILE...`: the plugin configuration checked offline by the filter's own
//! reader (src/check/). Native only: built for wasm32 (as every bin of the package is) it
//! does nothing.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env = |name: &str| std::env::var(name).ok();
    let status = wasm_iap::check::run(
        &args,
        &mut wasm_iap::check::Io {
            stdin: &mut std::io::stdin(),
            out: &mut std::io::stdout(),
            err: &mut std::io::stderr(),
            env: &env,
        },
    );
    std::process::exit(status);
}
