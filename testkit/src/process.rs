//! Child processes that cannot outlive the test or benchmark that started them.

use std::process::Child;

/// Kills and reaps the child on drop (a failed assertion must not leave a probe running).
pub struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    pub fn new(child: Child) -> Self {
        KillOnDrop(Some(child))
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Takes the child back, e.g. to signal it and wait for its output.
    pub fn into_inner(mut self) -> Child {
        self.0.take().expect("the child is only taken once")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A finished command's stdout then stderr, as text (for assertions and failure messages).
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
