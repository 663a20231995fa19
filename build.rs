//! Embeds libtorch's library folder as an rpath, so the `runner` binary and the test
//! binaries find `libtorch*.so` without `LD_LIBRARY_PATH`. `torch-sys` reports the folder
//! through its `links = "tch"` metadata as `DEP_TCH_LIBTORCH_LIB`.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    }
}
