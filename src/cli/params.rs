//! The ATC parameter flags shared by every computing command, and the
//! sweep's grid axis flags, both generated from the parameter registry
//! ([`atc_bt::engine::registry::PARAMS`]): flag names are the registry's
//! names with `_` written `-`, help texts, defaults and valid ranges are
//! the registry's, units are the spec's (lambda and decay in Pine input
//! units).
//!
//! Why the clap builder API rather than derive: with derive the 19 flags
//! were a second list of the parameters (plus a third in `apply`), which a
//! new parameter had to be added to by hand; generated, a registry row is
//! a flag, and the parsed value goes through the registry's own setter.
//! The derive API still flattens these into each command (`Args` and
//! `FromArgMatches` are implemented by hand below).

use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

use atc_bt::engine::registry::{self, Kind, ParamSpec, ParamValue};
use atc_bt::engine::AtcParams;

/// The help heading of the ATC parameter flags.
const ATC_HEADING: &str = "ATC parameters (spec units; defaults from spec/ATC.md)";
/// The help heading of the grid axis flags.
const GRID_HEADING: &str = "Grid axes (list a,b,c or range start:stop:step)";

/// The `--help` line of a parameter flag: the registry's help, default and
/// valid range.
fn flag_help(s: &ParamSpec) -> String {
    let default = match s.default {
        ParamValue::Robustness(r) => r.name().to_ascii_lowercase(),
        other => other.to_string(),
    };
    format!("{} [default: {default}; valid: {}]", s.help, s.range_text)
}

/// The flag's placeholder.
fn value_name(s: &ParamSpec) -> &'static str {
    match s.kind {
        Kind::Real => "X",
        Kind::Int => "N",
        Kind::Robustness => "narrow|medium|wide",
    }
}

/// The clap argument id of a parameter (its name, as derive would use).
fn id(s: &ParamSpec) -> &'static str {
    s.name
}

/// ATC parameter overrides; a flag left out keeps the value from the
/// strategy file (or the spec default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AtcArgs {
    /// The flags given, in registry order.
    pub values: Vec<(&'static ParamSpec, ParamValue)>,
}

impl AtcArgs {
    /// `base` with every given flag applied.
    pub fn apply(&self, mut p: AtcParams) -> AtcParams {
        for (s, v) in &self.values {
            // The flag's parser read `v` with the same row's kind.
            if let Err(e) = s.set(&mut p, *v) {
                unreachable!("--{}: {e}", s.flag());
            }
        }
        p
    }
}

impl Args for AtcArgs {
    fn augment_args(cmd: Command) -> Command {
        let mut cmd = cmd.next_help_heading(ATC_HEADING);
        for s in registry::PARAMS {
            let spec: &'static ParamSpec = s;
            let mut arg = Arg::new(id(s))
                .long(s.flag())
                .value_name(value_name(s))
                .help(flag_help(s))
                .action(ArgAction::Set)
                .value_parser(move |text: &str| spec.parse(text).map_err(|e| e.to_string()));
            if s.kind != Kind::Robustness {
                arg = arg.allow_negative_numbers(true);
            }
            cmd = cmd.arg(arg);
        }
        cmd
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for AtcArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut out = AtcArgs::default();
        out.update_from_arg_matches(m)?;
        Ok(out)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for s in registry::PARAMS {
            if let Some(v) = m.get_one::<ParamValue>(id(s)) {
                self.values.retain(|(x, _)| x.name != s.name);
                self.values.push((s, *v));
            }
        }
        self.values
            .sort_by_key(|(s, _)| registry::PARAMS.iter().position(|x| x.name == s.name));
        Ok(())
    }
}

/// Quick grid axes of `atc-bt sweep`, one flag per registry row that is a
/// grid axis: a list `a,b,c`, a range `start:stop:step` (inclusive) or one
/// value, parsed by [`atc_bt::sweep::Grid::set_axis`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GridArgs {
    /// `(axis, text)` of the flags given, in registry order.
    pub axes: Vec<(&'static str, String)>,
}

impl Args for GridArgs {
    fn augment_args(cmd: Command) -> Command {
        let mut cmd = cmd.next_help_heading(GRID_HEADING);
        for s in registry::axes() {
            let mut arg = Arg::new(id(s))
                .long(s.flag())
                .value_name("SPEC")
                .help(format!("{} [valid: {}]", s.help, s.range_text))
                .action(ArgAction::Set);
            if s.kind != Kind::Robustness {
                arg = arg.allow_hyphen_values(true);
            }
            cmd = cmd.arg(arg);
        }
        cmd
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for GridArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut out = GridArgs::default();
        out.update_from_arg_matches(m)?;
        Ok(out)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for s in registry::axes() {
            if let Some(v) = m.get_one::<String>(id(s)) {
                self.axes.retain(|(x, _)| *x != s.name);
                self.axes.push((s.name, v.clone()));
            }
        }
        let order: Vec<&str> = registry::axes().map(|s| s.name).collect();
        self.axes
            .sort_by_key(|(a, _)| order.iter().position(|x| x == a));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atc_bt::engine::Robustness;

    /// A value of the parameter's kind other than its default, as text
    /// and as a value.
    fn other(s: &ParamSpec) -> (String, ParamValue) {
        let v = match s.default {
            ParamValue::Real(x) => ParamValue::Real(x - 0.75),
            ParamValue::Int(x) => ParamValue::Int(x + 3),
            ParamValue::Robustness(_) => ParamValue::Robustness(Robustness::Wide),
        };
        let text = match v {
            ParamValue::Robustness(_) => "WIDE".to_string(),
            other => other.to_string(),
        };
        (text, v)
    }

    fn parse<T: Args + FromArgMatches>(args: &[String]) -> Result<T, clap::Error> {
        let cmd = T::augment_args(Command::new("t").no_binary_name(true));
        let m = cmd.try_get_matches_from(args)?;
        T::from_arg_matches(&m)
    }

    /// Each registry row is a flag; its value reaches exactly that field
    /// of `AtcParams` (negative numbers included).
    #[test]
    fn every_flag_round_trips_to_atc_params() {
        for s in registry::PARAMS {
            let (text, v) = other(s);
            let a: AtcArgs = parse(&[format!("--{}", s.flag()), text]).unwrap();
            let p = a.apply(AtcParams::default());
            assert_eq!((s.get)(&p), v, "--{}", s.flag());
            let mut want = AtcParams::default();
            s.set(&mut want, v).unwrap();
            assert_eq!(p, want, "--{} set another field", s.flag());
        }
        let none: AtcArgs = parse(&[]).unwrap();
        assert_eq!(none.apply(AtcParams::default()), AtcParams::default());
    }

    /// Help texts carry the registry's help, default and range; bad values
    /// are refused naming the parameter.
    #[test]
    fn help_and_errors_come_from_the_registry() {
        let cmd = AtcArgs::augment_args(Command::new("t"));
        for s in registry::PARAMS {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(s.flag().as_str()))
                .unwrap_or_else(|| panic!("no flag --{}", s.flag()));
            let help = arg.get_help().unwrap().to_string();
            assert!(help.starts_with(s.help), "{help}");
            assert!(help.contains(s.range_text), "{help}");
            let e = parse::<AtcArgs>(&[format!("--{}", s.flag()), "x".into()])
                .unwrap_err()
                .to_string();
            assert!(e.contains(s.name) && e.contains(s.kind_text()), "{e}");
        }
        assert_eq!(cmd.get_arguments().count(), registry::PARAMS.len());
    }

    /// Each grid axis is a `sweep` flag; its text becomes the axis.
    #[test]
    fn every_grid_flag_reaches_its_axis() {
        let axes: Vec<&ParamSpec> = registry::axes().collect();
        for s in &axes {
            let (text, v) = other(s);
            let g: GridArgs = parse(&[format!("--{}", s.flag()), text.clone()]).unwrap();
            assert_eq!(g.axes, vec![(s.name, text.clone())]);
            let mut grid = atc_bt::sweep::Grid::default();
            grid.set_axis(s.name, &text).unwrap();
            assert_eq!(grid.axes, vec![(s.name.to_string(), vec![v])]);
        }
        let cmd = GridArgs::augment_args(Command::new("t"));
        assert_eq!(cmd.get_arguments().count(), axes.len());
        for a in cmd.get_arguments() {
            let s = registry::param(a.get_id().as_str()).unwrap();
            let help = a.get_help().unwrap().to_string();
            assert!(
                help.starts_with(s.help) && help.contains(s.range_text),
                "{help}"
            );
        }
        // Flags come back in registry order whatever the command line's.
        let g: GridArgs =
            parse(&["--decay".into(), "1".into(), "--lambda".into(), "2".into()]).unwrap();
        assert_eq!(g.axes, vec![("lambda", "2".into()), ("decay", "1".into())]);
    }
}
