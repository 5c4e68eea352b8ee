import MyriXen
print("placeholder")
