//! `wasm-iap check FILE...`: the plugin configuration checked offline by the filter's own
//! reader (src/check/). Native only: it needs the `cli` feature, which the .wasm never has.

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
