//! `mesh-node`: parse flags, run, exit with the command's code.

fn main() -> std::process::ExitCode {
    mesh_node::cli::main()
}
