# 简报、通知和微信模板的标签：简体中文。

## Record sections
organizers = 主办单位
sponsors = 主办
supporters = 支持
co-organizers = 承办
attendees = 参会人员
topics = 议题
highlights = 专家观点摘要
image = 图片

## Session formats
format-online = 线上
format-in-person = 线下
format-hybrid = 线上线下结合

## Digest subject
digest-subject = { $publisher }: { $count } 场会议简报

## Contact block
contact = 联系我们
address = 地址
tel = 电话
fax = 传真
email = 电子邮件
web = 网站
wechat = 微信号

## Footer
why = 您收到本简报，是因为您订阅了我们的邮件列表。
unsubscribe = 退订

## Notices
notice = 通知
urgent = 紧急

## The web version and the public archive
view-in-browser = 在浏览器中查看
archive = 简报存档
archive-languages = 语言
archive-all = 所有语言
archive-older = 更早的简报
archive-newest = 最新简报
archive-feed = Atom 订阅源
archive-empty = 这里还没有发布任何内容。
