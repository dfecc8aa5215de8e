# 簡報、通知和微信模板的標籤：繁體中文。

## Record sections
organizers = 主辦單位
sponsors = 主辦
supporters = 支持
co-organizers = 承辦
attendees = 與會人員
topics = 議題
highlights = 專家觀點摘要
image = 圖片

## Session formats
format-online = 線上
format-in-person = 實體
format-hybrid = 實體與線上並行

## Digest subject
digest-subject = { $publisher }: { $count } 場會議簡報

## Contact block
contact = 聯絡我們
address = 地址
tel = 電話
fax = 傳真
email = 電子郵件
web = 網站
wechat = 微信號

## Footer
why = 您收到本簡報，是因為您訂閱了我們的郵件名單。
unsubscribe = 取消訂閱

## Notices
notice = 通知
urgent = 緊急

## The web version and the public archive
view-in-browser = 在瀏覽器中檢視
archive = 簡報存檔
archive-languages = 語言
archive-all = 所有語言
archive-older = 更早的簡報
archive-newest = 最新簡報
archive-feed = Atom 訂閱源
archive-empty = 這裡尚未發布任何內容。
