//! A user's theme, language and time zone, checked on the way in: a language is a BCP 47 tag (stored in
//! its canonical case, `pt-br` → `pt-BR`), a time zone a name of the IANA database.

use std::str::FromStr;

use chrono::Utc;

use super::model::{PreferencesRow, Theme, UserId};
use super::repo;
use crate::app::AppState;
use crate::error::{AppError, AppResult};

/// What a user who chose nothing gets.
fn defaults(user: UserId) -> PreferencesRow {
    PreferencesRow {
        user_id: user.0,
        theme: Theme::System,
        language: "en".into(),
        time_zone: "UTC".into(),
        updated_at: Utc::now(),
    }
}

pub async fn get(app: &AppState, user: UserId) -> AppResult<PreferencesRow> {
    let mut conn = app.pool.get().await?;
    Ok(repo::preferences(&mut conn, user.0)
        .await?
        .unwrap_or_else(|| defaults(user)))
}

/// Changes what is given; `None` keeps it.
pub async fn update(
    app: &AppState,
    user: UserId,
    theme: Option<Theme>,
    language: Option<&str>,
    time_zone: Option<&str>,
) -> AppResult<PreferencesRow> {
    let language = language.map(language_tag).transpose()?;
    let time_zone = time_zone.map(iana_time_zone).transpose()?;
    let mut conn = app.pool.get().await?;
    let current = repo::preferences(&mut conn, user.0)
        .await?
        .unwrap_or_else(|| defaults(user));
    let row = PreferencesRow {
        user_id: user.0,
        theme: theme.unwrap_or(current.theme),
        language: language.unwrap_or(current.language),
        time_zone: time_zone.unwrap_or(current.time_zone),
        updated_at: Utc::now(),
    };
    repo::save_preferences(&mut conn, &row).await?;
    Ok(row)
}

/// A well-formed BCP 47 tag (a two- or three-letter language, then script, region, variants,
/// extensions or private use), in canonical case.
pub fn language_tag(text: &str) -> AppResult<String> {
    let refused = || {
        AppError::bad_input(
            "language",
            "Use a BCP 47 language tag such as en, en-GB, pt-BR or zh-Hant-TW.",
        )
    };
    let text = text.trim();
    if text.is_empty() || text.len() > 35 {
        return Err(refused());
    }
    let mut parts = text.split('-');
    let language = parts.next().ok_or_else(refused)?;
    if !(matches!(language.len(), 2 | 3) && language.bytes().all(|b| b.is_ascii_alphabetic())) {
        return Err(refused());
    }
    let mut canonical = vec![language.to_ascii_lowercase()];
    let mut after_singleton = false;
    for part in parts {
        if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(refused());
        }
        let is_alpha = part.bytes().all(|b| b.is_ascii_alphabetic());
        let is_digit = part.bytes().all(|b| b.is_ascii_digit());
        let cased = if after_singleton {
            part.to_ascii_lowercase()
        } else if part.len() == 1 {
            after_singleton = true;
            part.to_ascii_lowercase()
        } else if part.len() == 4 && is_alpha {
            let mut script = part.to_ascii_lowercase();
            if let Some(first) = script.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            script
        } else if (part.len() == 2 && is_alpha) || (part.len() == 3 && is_digit) {
            part.to_ascii_uppercase()
        } else if part.len() >= 5
            || (part.len() == 4 && part.as_bytes().first().is_some_and(u8::is_ascii_digit))
        {
            part.to_ascii_lowercase()
        } else {
            return Err(refused());
        };
        canonical.push(cased);
    }
    if after_singleton && canonical.last().is_some_and(|last| last.len() == 1) {
        return Err(refused());
    }
    Ok(canonical.join("-"))
}

/// A name of the IANA time zone database, spelt as it is there.
pub fn iana_time_zone(text: &str) -> AppResult<String> {
    chrono_tz::Tz::from_str(text.trim())
        .map(|zone| zone.name().to_owned())
        .map_err(|_| {
            AppError::bad_input(
                "timeZone",
                "Use an IANA time zone name such as Europe/Paris, America/New_York or UTC.",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags_are_checked_and_put_in_canonical_case() {
        for (given, canonical) in [
            ("en", "en"),
            ("EN-gb", "en-GB"),
            ("pt-br", "pt-BR"),
            ("zh-hant-tw", "zh-Hant-TW"),
            ("es-419", "es-419"),
            ("de-CH-1996", "de-CH-1996"),
            ("en-US-x-twain", "en-US-x-twain"),
        ] {
            assert_eq!(language_tag(given).unwrap(), canonical);
        }
        for bad in [
            "",
            "e",
            "english-language",
            "en_GB",
            "en--GB",
            "en-x",
            "1en",
        ] {
            assert!(language_tag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_zones_must_be_iana_names() {
        assert_eq!(iana_time_zone("Europe/Paris").unwrap(), "Europe/Paris");
        assert_eq!(iana_time_zone("UTC").unwrap(), "UTC");
        assert!(iana_time_zone("Mars/Olympus").is_err());
        assert!(iana_time_zone("+02:00").is_err());
    }
}
