# Labels of the bulletin, notice and WeChat templates: English (the fallback for every
# other locale: a message missing elsewhere is taken from here).
#
# Every locale folder beside this one has the same messages (a test checks it).

## Record sections
organizers = Organisers
sponsors = Sponsored by
supporters = Supported by
co-organizers = Co-organised by
attendees = Attendees
topics = Topics
highlights = Highlights of the expert views
image = Image

## Session formats
format-online = Online
format-in-person = In person
format-hybrid = Hybrid (in person and online)

## A digest's subject: the publisher's first name and how many records it carries
digest-subject = { $publisher }: { $count ->
    [one] { $count } session report
   *[other] { $count } session reports
}

## Contact block
contact = Contact Us
address = Address
tel = Tel
fax = Fax
email = Email
web = Web
wechat = WeChat ID

## Footer
why = You receive this bulletin because you are on one of our mailing lists.
unsubscribe = Unsubscribe

## Notices
notice = Notice
urgent = Urgent

## The web version and the public archive
view-in-browser = View in your browser
archive = Bulletin archive
archive-languages = Languages
archive-all = All languages
archive-older = Older bulletins
archive-newest = Newest bulletins
archive-feed = Atom feed
archive-empty = Nothing has been published here yet.
