# ស្លាកនៃព្រឹត្តិបត្រ សេចក្តីជូនដំណឹង និងអត្ថបទ WeChat៖ ភាសាខ្មែរ

## Record sections
organizers = អ្នករៀបចំ
sponsors = ឧបត្ថម្ភដោយ
supporters = គាំទ្រដោយ
co-organizers = សហការរៀបចំដោយ
attendees = អ្នកចូលរួម
topics = ប្រធានបទ
highlights = ចំណុចសំខាន់ៗនៃទស្សនៈរបស់អ្នកជំនាញ
image = រូបភាព

## Session formats
format-online = តាមអនឡាញ
format-in-person = ដោយផ្ទាល់
format-hybrid = ចម្រុះ (ដោយផ្ទាល់ និងតាមអនឡាញ)

## Digest subject
digest-subject = { $publisher }: របាយការណ៍កិច្ចប្រជុំចំនួន { $count }

## Contact block
contact = ទំនាក់ទំនងយើងខ្ញុំ
address = អាសយដ្ឋាន
tel = ទូរស័ព្ទ
fax = ទូរសារ
email = អ៊ីមែល
web = គេហទំព័រ
wechat = អត្តសញ្ញាណ WeChat

## Footer
why = លោកអ្នកទទួលបានព្រឹត្តិបត្រនេះ ដោយសារលោកអ្នកស្ថិតនៅក្នុងបញ្ជីអ្នកទទួលសំបុត្ររបស់យើងខ្ញុំ។
unsubscribe = ឈប់ទទួលព្រឹត្តិបត្រ

## Notices
notice = សេចក្តីជូនដំណឹង
urgent = បន្ទាន់

## The web version and the public archive
view-in-browser = មើលក្នុងកម្មវិធីរុករក
archive = បណ្ណសារព្រឹត្តិបត្រ
archive-languages = ភាសា
archive-all = គ្រប់ភាសា
archive-older = ព្រឹត្តិបត្រចាស់ៗ
archive-newest = ព្រឹត្តិបត្រថ្មីបំផុត
archive-feed = ចំណី Atom
archive-empty = មិនទាន់មានអ្វីត្រូវបានផ្សព្វផ្សាយនៅទីនេះនៅឡើយទេ។
