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
