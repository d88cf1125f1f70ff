//! The one place that prints. Results (plan text, JSON, a script) go to stdout; progress, warnings and errors
//! go to stderr when stdout carries JSON, so that stdout stays machine-readable. A closed pipe is not an
//! error worth crashing for.

use std::io::{IsTerminal, Write};

#[derive(Clone, Copy, Debug)]
pub(crate) struct Shell {
    pub(crate) style: Style,
    pub(crate) json: bool,
    pub(crate) verbose: bool,
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
        }
    }

    /// A result on stdout.
    pub(crate) fn out(&self, text: &str) {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(text.as_bytes());
        let _ = o.flush();
    }

    /// A human line: stdout normally, stderr when stdout is JSON.
    pub(crate) fn line(&self, text: &str) {
        if self.json {
            self.err(text);
        } else {
            self.out(&format!("{text}\n"));
        }
    }

    /// Only with `-v`.
    pub(crate) fn debug(&self, text: &str) {
        if self.verbose {
            self.err(&format!("debug: {text}"));
        }
    }

    pub(crate) fn warn(&self, text: &str) {
        self.err(&format!("{} {text}", self.style.yellow("warning:")));
    }

    pub(crate) fn error(&self, text: &str) {
        self.err(&format!("{} {text}", self.style.red("error:")));
    }

    fn err(&self, text: &str) {
        let mut e = std::io::stderr().lock();
        let _ = writeln!(e, "{text}");
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
