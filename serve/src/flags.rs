//! Parsers for command-line values both servers take.

use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use offload_proto::Named;

/// The clap parser of a flag that takes one of a proto enum's [`Named`] values (`--default-mode rayon`): `--help`
/// lists the choices, and the names are the ones metrics and reports use.
pub fn choice<T: Named>() -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(T::CHOICES.iter().map(|v| PossibleValue::new(v.short_name()))).map(|name: String| {
        // PossibleValuesParser only lets through the names listed above.
        T::CHOICES.iter().copied().find(|v| v.short_name() == name).unwrap_or(T::CHOICES[0])
    })
}

/// Parses `15s`, `500ms`, `2m` and plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map_or((s, "s"), |i| s.split_at(i));
    let value: f64 = number.parse().map_err(|_| format!("not a duration: {s:?} (try 15s, 500ms, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit in {s:?}: use ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3h").is_err());
    }

    #[test]
    fn choices_are_the_short_names() {
        use offload_proto::v1::ExecMode;
        let command =
            clap::Command::new("t").arg(clap::Arg::new("mode").long("mode").value_parser(choice::<ExecMode>()));
        let matches = command.clone().try_get_matches_from(["t", "--mode", "spawn-blocking"]).expect("a choice");
        assert_eq!(matches.get_one::<ExecMode>("mode"), Some(&ExecMode::SpawnBlocking));
        assert!(command.try_get_matches_from(["t", "--mode", "unspecified"]).is_err());
    }
}
