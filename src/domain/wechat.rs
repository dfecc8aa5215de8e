//! The WeChat article a bulletin carries: rendered once (`render`), stored with the
//! bulletin (`store`) and sent by the WeChat channel.

/// A WeChat article rendered once: inline styles only, no scripts, outside links as notes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WechatArticle {
    pub title: String,
    pub author: String,
    pub digest: String,
    /// The `content` fragment; images are `cid:` references until uploaded.
    pub html: String,
}
