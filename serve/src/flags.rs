//! Parsers for command-line values both servers take (durations are `offload-duration`'s, as every binary's).

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

#[cfg(test)]
mod tests {
    use super::*;

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
