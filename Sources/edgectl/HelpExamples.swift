/// The "Examples:" block that ends every command's `--help` (EdgectlHelpTests walks the command
/// tree and fails on a command without one). Each line is a command a user can paste.
func helpExamples(_ lines: String...) -> String {
    "Examples:\n" + lines.map { "  " + $0 }.joined(separator: "\n")
}

/// edgectl's exit statuses, shown by `edgectl --help` and docs/operations.md.
let exitCodesHelp = """
    Exit codes: 0 success; 1 the command failed, or the daemon refused or failed the request; 2 a \
    fine-tuning result was rejected by the eval gate, or a followed job failed; 3 the daemon is not \
    reachable (not running, or no permission on its socket); 64 bad usage.
    """
