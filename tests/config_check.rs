//! The configuration's own checks, without a server: values that must be one of a few words,
//! and the effective configuration printed as TOML (what `check-config` prints) reading back
//! to the same settings.

use uringseed::config::Config;

#[test]
fn log_level_format_and_backend_must_be_known_values() {
    for (text, key) in [
        ("[log]\nlevel = \"loud\"\n", "log.level"),
        ("[log]\nformat = \"xml\"\n", "log.format"),
        ("[server]\nio_backend = \"epoll\"\n", "server.io_backend"),
        ("[seeding]\nchoker = \"fastest\"\n", "seeding.choker"),
        (
            "[seeding]\nsuper_seed = \"sometimes\"\n",
            "seeding.super_seed",
        ),
    ] {
        let e = Config::parse(text, "c.toml").unwrap_err();
        assert_eq!(e.key, key, "{e}");
        assert!(e.to_string().starts_with("c.toml: key `"), "{e}");
    }
    let ok = Config::parse("[log]\nlevel = \"DEBUG\"\nformat = \"json\"\n", "c.toml");
    assert!(ok.is_ok(), "{ok:?}");
    let c = Config::parse("[seeding]\nchoker = \"anti_leech\"\n", "c.toml").unwrap();
    assert_eq!(c.seeding.choker, uringseed::config::ChokerMode::AntiLeech);
}

#[test]
fn the_effective_configuration_prints_as_toml_that_reads_back_the_same() {
    let mut c = Config::parse(
        "[server]\nlisten = [\"127.0.0.1:6881\", \"[::1]:6881\"]\nupload_rate_limit = \"1MiB\"\n\
         encryption = \"required\"\n[seeding]\nchoker = \"anti_leech\"\n[metrics]\nlisten = \"127.0.0.1:9\"\n\
         [[torrent]]\ntorrent = \"/t/a.torrent\"\ndata = \"/d\"\nupload_quota = \"2G\"\n",
        "c.toml",
    )
    .unwrap();
    let text = toml::to_string(&c).unwrap();
    assert_eq!(Config::parse(&text, "printed").unwrap(), c, "{text}");
    c.metrics.listen = None;
    let text = toml::to_string(&c).unwrap();
    assert_eq!(Config::parse(&text, "printed").unwrap(), c, "{text}");
}
