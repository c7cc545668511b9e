//! `trainer demo`: the browser page (web/), served on 127.0.0.1 with a model, or written out as
//! static files to host anywhere.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use clap::Args;
use trainer::model_file::ModelFile;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// The model the page opens with [default: the committed best int8 model,
    /// firmware-example/model/mlp-int8.bin].
    model: Option<PathBuf>,
    /// The port on 127.0.0.1 (0: any free one; the address is printed).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Write the page's static files (HTML, JavaScript, CSS, WebAssembly and the model as
    /// model.bin) into DIR instead of serving them.
    #[arg(long, value_name = "DIR")]
    write: Option<PathBuf>,
    /// The page's WebAssembly module, built beforehand [default: built now by cargo from the
    /// workspace's web/ crate].
    #[arg(long, value_name = "FILE")]
    wasm: Option<PathBuf>,
}

/// The page's files: name, content type, bytes.
type Site = Vec<(&'static str, &'static str, Vec<u8>)>;

pub(crate) fn demo(args: DemoArgs) -> Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let workspace = workspace.canonicalize().unwrap_or(workspace);
    let model_path = args
        .model
        .unwrap_or_else(|| workspace.join("firmware-example/model/mlp-int8.bin"));
    if let Some(dir) = &args.write {
        trainer::places::Files::new()
            .input(&model_path, "the model")?
            .output_folder(dir, "--write")?
            .check()?;
    }
    let model = ModelFile::read(&model_path)?;
    // Refused here with the CLI's message rather than by the page.
    model.open(&model_path)?;
    let wasm = match &args.wasm {
        Some(path) => trainer::output::read_capped(path, 16 << 20, "a WebAssembly module")?,
        None => build_wasm(&workspace)?,
    };
    let site: Site = vec![
        (
            "index.html",
            "text/html; charset=utf-8",
            include_bytes!("../../../web/static/index.html").to_vec(),
        ),
        (
            "app.js",
            "text/javascript; charset=utf-8",
            include_bytes!("../../../web/static/app.js").to_vec(),
        ),
        (
            "style.css",
            "text/css; charset=utf-8",
            include_bytes!("../../../web/static/style.css").to_vec(),
        ),
        ("infer_web.wasm", "application/wasm", wasm),
        (
            "model.bin",
            "application/octet-stream",
            model.bytes().to_vec(),
        ),
    ];
    match args.write {
        Some(dir) => write_site(&dir, &site),
        None => serve(args.port, &site, &model_path),
    }
}

/// Builds web/ for the browser with cargo (a no-op when up to date) and reads the module.
fn build_wasm(workspace: &Path) -> Result<Vec<u8>> {
    let manifest = workspace.join("web/Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "the page's sources (web/) are not beside this trainer ({}): pass --wasm FILE",
            manifest.display()
        );
    }
    eprintln!(
        "building the page: cargo build -p infer-web --profile web --target wasm32-unknown-unknown"
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--profile", "web", "--target", "wasm32-unknown-unknown"])
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo to build the page")?;
    if !output.status.success() {
        bail!(
            "building the page's WebAssembly failed (if the target is missing: `rustup target add \
             wasm32-unknown-unknown`)"
        );
    }
    let wasm = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "infer_web")
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(PathBuf::from))
                .collect::<Vec<_>>()
        })
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        .context("cargo built the page but named no .wasm file")?;
    trainer::output::read_capped(&wasm, 16 << 20, "a WebAssembly module")
}

fn write_site(dir: &Path, site: &Site) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, _, bytes) in site {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    say!(
        "wrote the page to {} ({} files): serve the folder with any static web server",
        dir.display(),
        site.len()
    )
}

fn serve(port: u16, site: &Site, model: &Path) -> Result<()> {
    let server = tiny_http::Server::http(("127.0.0.1", port))
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let address = server
        .server_addr()
        .to_ip()
        .context("the server has no IP address")?;
    say!(
        "serving the page at http://{address}/ with {} (Ctrl-C stops)",
        model.display()
    )?;
    for request in server.incoming_requests() {
        let path = request.url().split(['?', '#']).next().unwrap_or("/");
        let name = path.trim_start_matches('/');
        let name = if name.is_empty() { "index.html" } else { name };
        let found = site.iter().find(|(n, _, _)| *n == name);
        let get = matches!(
            request.method(),
            tiny_http::Method::Get | tiny_http::Method::Head
        );
        let response = match found {
            Some((_, kind, bytes)) if get => tiny_http::Response::from_data(bytes.clone())
                .with_header(header("Content-Type", kind))
                .with_header(header("Cache-Control", "no-store")),
            Some(_) => tiny_http::Response::from_string("method not allowed").with_status_code(405),
            None => tiny_http::Response::from_string("not found").with_status_code(404),
        };
        // A client that went away is its own business; the server goes on.
        let _ = request.respond(response);
    }
    Ok(())
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    // Both are ASCII constants of this file.
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|()| unreachable!("ASCII header"))
}
