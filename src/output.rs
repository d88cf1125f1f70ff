//! The one place that prints. Results (plan text, JSON, a script) go to stdout; progress, warnings and errors
//! go to stderr when stdout carries JSON, so that stdout stays machine-readable. A closed pipe is not an
//! error worth crashing for.
//!
//! A shell can also write into buffers (`Shell::from_write`, as cargo's can), so that output is tested
//! without running the binary.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    reason = "the output layer is the one place that touches the terminal"
)]

use std::io::{BufRead, IsTerminal, Write};
use std::sync::{Arc, Mutex};

/// Where a shell writes and reads.
#[derive(Clone)]
enum Streams {
    /// The process's stdout, stderr and stdin.
    Std,
    /// Buffers; questions read from a fixed list of answers.
    Write {
        out: Arc<Mutex<Box<dyn Write + Send>>>,
        err: Arc<Mutex<Box<dyn Write + Send>>>,
        answers: Arc<Mutex<std::vec::IntoIter<String>>>,
    },
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Streams::Std => "Std",
            Streams::Write { .. } => "Write",
        })
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Shell {
    pub(crate) style: Style,
    pub(crate) json: bool,
    pub(crate) verbose: bool,
    streams: Streams,
}

impl Shell {
    pub(crate) fn new(no_color: bool, json: bool, verbose: bool) -> Self {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
        let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let terminal = std::io::stdout().is_terminal();
        // CI logs and pipes get plain output: no colours (progress is always printed as lines).
        let plain = ci || !terminal;
        let color = !no_color && !no_color_env && !plain && !json;
        Shell {
            style: Style { color },
            json,
            verbose,
            streams: Streams::Std,
        }
    }

    /// A shell that writes stdout's part to `out` and stderr's to `err`, without colours, and answers
    /// questions with `answers` in turn (then with end of input).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn from_write(
        out: Box<dyn Write + Send>,
        err: Box<dyn Write + Send>,
        json: bool,
        answers: Vec<String>,
    ) -> Self {
        Shell {
            style: Style { color: false },
            json,
            verbose: false,
            streams: Streams::Write {
                out: Arc::new(Mutex::new(out)),
                err: Arc::new(Mutex::new(err)),
                answers: Arc::new(Mutex::new(answers.into_iter())),
            },
        }
    }

    /// A result on stdout; a closed pipe is not an error.
    pub(crate) fn out(&self, text: &str) {
        let _ = self.try_out(text);
    }

    /// A result on stdout, and whether it could be written (a closed pipe counts as written:
    /// `natgw startup-script | head` is fine).
    pub(crate) fn try_out(&self, text: &str) -> std::io::Result<()> {
        let written = match &self.streams {
            Streams::Std => {
                let mut o = std::io::stdout().lock();
                o.write_all(text.as_bytes()).and_then(|()| o.flush())
            }
            Streams::Write { out, .. } => write_locked(out, text),
        };
        match written {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }

    /// A human line: stdout normally, stderr when stdout is JSON.
    pub(crate) fn line(&self, text: &str) {
        self.block(&format!("{text}\n"));
    }

    /// Human text that ends its own lines: stdout normally, stderr when stdout is JSON.
    pub(crate) fn block(&self, text: &str) {
        if self.json {
            self.err(text);
        } else {
            self.out(text);
        }
    }

    /// Only with `-v`.
    pub(crate) fn debug(&self, text: &str) {
        if self.verbose {
            self.err(&format!("debug: {text}\n"));
        }
    }

    pub(crate) fn warn(&self, text: &str) {
        self.err(&format!("{} {text}\n", self.style.yellow("warning:")));
    }

    pub(crate) fn error(&self, text: &str) {
        self.err(&format!("{} {text}\n", self.style.red("error:")));
    }

    /// Whether someone can answer a question.
    pub(crate) fn can_ask(&self) -> bool {
        match &self.streams {
            Streams::Std => std::io::stdin().is_terminal(),
            Streams::Write { .. } => true,
        }
    }

    /// Shows `question` on stderr and reads one line of answer (empty at the end of input).
    pub(crate) fn ask(&self, question: &str) -> std::io::Result<String> {
        self.err(&self.style.bold(question));
        match &self.streams {
            Streams::Std => {
                let mut answer = String::new();
                std::io::stdin().lock().read_line(&mut answer)?;
                Ok(answer)
            }
            Streams::Write { answers, .. } => Ok(answers
                .lock()
                .map_err(|_| std::io::Error::other("answers poisoned"))?
                .next()
                .unwrap_or_default()),
        }
    }

    fn err(&self, text: &str) {
        let _ = match &self.streams {
            Streams::Std => {
                let mut e = std::io::stderr().lock();
                e.write_all(text.as_bytes()).and_then(|()| e.flush())
            }
            Streams::Write { err, .. } => write_locked(err, text),
        };
    }
}

fn write_locked(w: &Mutex<Box<dyn Write + Send>>, text: &str) -> std::io::Result<()> {
    let mut w = w
        .lock()
        .map_err(|_| std::io::Error::other("output poisoned"))?;
    w.write_all(text.as_bytes()).and_then(|()| w.flush())
}

/// A buffer to hand to `Shell::from_write` and read back.
#[cfg(test)]
#[derive(Clone, Debug, Default)]
pub(crate) struct Buffer(Arc<Mutex<Vec<u8>>>);

#[cfg(test)]
impl Buffer {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("buffer")).into_owned()
    }
}

#[cfg(test)]
impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// ANSI colours, or none.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Style {
    pub(crate) color: bool,
}

impl Style {
    fn paint(self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    pub(crate) fn green(self, s: &str) -> String {
        self.paint("32", s)
    }
    pub(crate) fn yellow(self, s: &str) -> String {
        self.paint("33", s)
    }
    pub(crate) fn red(self, s: &str) -> String {
        self.paint("31", s)
    }
    pub(crate) fn bold(self, s: &str) -> String {
        self.paint("1", s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured(json: bool) -> (Shell, Buffer, Buffer) {
        let (out, err) = (Buffer::default(), Buffer::default());
        let shell = Shell::from_write(Box::new(out.clone()), Box::new(err.clone()), json, vec![]);
        (shell, out, err)
    }

    #[test]
    fn human_lines_leave_stdout_to_json() {
        let (shell, out, err) = captured(true);
        shell.out("{}\n");
        shell.line("Apply complete!");
        shell.error("boom");
        assert_eq!(out.text(), "{}\n");
        assert_eq!(err.text(), "Apply complete!\nerror: boom\n");
        let (shell, out, err) = captured(false);
        shell.line("Apply complete!");
        shell.warn("careful");
        assert_eq!(out.text(), "Apply complete!\n");
        assert_eq!(err.text(), "warning: careful\n");
    }

    #[test]
    fn debug_only_when_verbose() {
        let (mut shell, _, err) = captured(false);
        shell.debug("hidden");
        shell.verbose = true;
        shell.debug("shown");
        assert_eq!(err.text(), "debug: shown\n");
    }

    #[test]
    fn questions_read_the_given_answers_then_end_of_input() {
        let (out, err) = (Buffer::default(), Buffer::default());
        let shell = Shell::from_write(
            Box::new(out),
            Box::new(err.clone()),
            false,
            vec!["yes\n".into()],
        );
        assert_eq!(shell.ask("Sure? ").expect("answer"), "yes\n");
        assert_eq!(shell.ask("Again? ").expect("answer"), "");
        assert_eq!(err.text(), "Sure? Again? ");
    }
}
