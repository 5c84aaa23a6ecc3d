//! Outgoing mail: over SMTP when `HUB_SMTP_URL` is set (`smtp://host:port`, `smtps://user:pass@host`),
//! otherwise each message is written as an `.eml` file under `$HUB_DATA_DIR/mail/` and logged, so
//! development and tests need no mail server. Messages have a plain-text and an HTML part.

use std::path::PathBuf;

use anyhow::Context;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::Config;

/// A message to send.
#[derive(Debug, Clone)]
pub struct OutgoingMail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

enum Transport {
    Smtp(Box<AsyncSmtpTransport<Tokio1Executor>>),
    Files(PathBuf),
}

/// See the module documentation.
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    /// Base of the links in mails.
    pub public_url: String,
}

impl Mailer {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let from: Mailbox =
            config.mail.from.parse().with_context(|| {
                format!("HUB_MAIL_FROM={} is not a mail address", config.mail.from)
            })?;
        let transport = match &config.mail.smtp_url {
            Some(url) => Transport::Smtp(Box::new(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                    .context("HUB_SMTP_URL is not a usable SMTP address")?
                    .build(),
            )),
            None => Transport::Files(config.data_dir.join("mail")),
        };
        Ok(Self {
            transport,
            from,
            public_url: config.mail.public_url.clone(),
        })
    }

    #[tracing::instrument(skip_all, fields(subject = %mail.subject))]
    pub async fn send(&self, mail: OutgoingMail) -> anyhow::Result<()> {
        let to: Mailbox = mail
            .to
            .parse()
            .context("the recipient is not a mail address")?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            // Quoted-printable keeps the messages readable as files and links intact for any client.
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .header(ContentTransferEncoding::QuotedPrintable)
                            .body(mail.text),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .header(ContentTransferEncoding::QuotedPrintable)
                            .body(mail.html),
                    ),
            )
            .context("cannot build the message")?;
        match &self.transport {
            Transport::Smtp(smtp) => {
                smtp.send(message)
                    .await
                    .context("the SMTP server refused the message")?;
                tracing::info!("mail sent over SMTP");
            }
            Transport::Files(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let path = dir.join(format!("{}.eml", uuid::Uuid::now_v7()));
                tokio::fs::write(&path, message.formatted())
                    .await
                    .with_context(|| format!("cannot write {}", path.display()))?;
                tracing::info!(path = %path.display(), "mail written to a file (HUB_SMTP_URL is not set)");
            }
        }
        Ok(())
    }
}

/// Escapes text for HTML.
pub fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A mail with one call to action: a greeting, a paragraph, a link, and a closing line.
pub fn action_mail(
    to: &str,
    subject: &str,
    greeting_name: &str,
    intro: &str,
    action: &str,
    link: &str,
    outro: &str,
) -> OutgoingMail {
    let text = format!(
        "Hello {greeting_name},\n\n{intro}\n\n{action}:\n{link}\n\n{outro}\n\n— Joyfull Hub\n"
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\">\
         <p>Hello {name},</p><p>{intro}</p>\
         <p><a href=\"{link}\">{action}</a></p>\
         <p style=\"color:#555\">{outro}</p><p>— Joyfull Hub</p></body></html>",
        name = html_escape(greeting_name),
        intro = html_escape(intro),
        link = html_escape(link),
        action = html_escape(action),
        outro = html_escape(outro),
    );
    OutgoingMail {
        to: to.to_owned(),
        subject: subject.to_owned(),
        text,
        html,
    }
}
