//! `mesh-node`: parse flags, run, exit with the command's code.

/// mimalloc rather than the system allocator: the data plane allocates and
/// frees small buffers on every request, where glibc malloc cost about a
/// tenth of a sidecar's cycles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mesh_node::cli::main()
}
