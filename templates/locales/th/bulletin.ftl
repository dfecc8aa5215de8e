# ป้ายข้อความของจดหมายข่าว ประกาศ และบทความ WeChat: ภาษาไทย

## Record sections
organizers = ผู้จัดงาน
sponsors = ผู้สนับสนุนหลัก
supporters = ได้รับการสนับสนุนจาก
co-organizers = ผู้ร่วมจัด
attendees = ผู้เข้าร่วม
topics = หัวข้อ
highlights = ประเด็นสำคัญจากความเห็นของผู้เชี่ยวชาญ
image = ภาพ

## Session formats
format-online = ออนไลน์
format-in-person = ณ สถานที่จัดงาน
format-hybrid = แบบผสมผสาน (ณ สถานที่จัดงานและออนไลน์)

## Digest subject
digest-subject = { $publisher }: รายงานการประชุม { $count } รายการ

## Contact block
contact = ติดต่อเรา
address = ที่อยู่
tel = โทรศัพท์
fax = โทรสาร
email = อีเมล
web = เว็บไซต์
wechat = ไอดี WeChat

## Footer
why = ท่านได้รับจดหมายข่าวฉบับนี้ เนื่องจากท่านอยู่ในรายชื่อผู้รับจดหมายของเรา
unsubscribe = ยกเลิกการรับจดหมายข่าว

## Notices
notice = ประกาศ
urgent = ด่วน

## The web version and the public archive
view-in-browser = ดูในเบราว์เซอร์
archive = คลังจดหมายข่าว
archive-languages = ภาษา
archive-all = ทุกภาษา
archive-older = จดหมายข่าวก่อนหน้า
archive-newest = จดหมายข่าวล่าสุด
archive-feed = ฟีด Atom
archive-empty = ยังไม่มีการเผยแพร่ใดๆ ที่นี่
